"""End to end on the synthetic demo data: a quality engineer trains, evaluates and predicts.

PatchCore uses the ImageNet EfficientNet-Lite0 weights bundled through requirements.txt, so this passes on a
fresh offline machine; results on real MVTec data are checked in test_real_grid.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.data.demo_data import make_demo_image
from core.engine.inference import LoadedModel
from core.store.artifacts import RunArtifacts
from core.store.runs import DONE, RunRegistry
from tests.conftest import SMALL_DEMO


@pytest.fixture
def trained_patchcore(demo_runs):
    registry = RunRegistry()
    run = registry.get(demo_runs[0])
    return run, registry, run.status


def test_training_a_demo_patchcore_run_finishes_with_metrics_in_range(trained_patchcore):
    run, registry, status = trained_patchcore
    assert status == DONE, run.error
    m = run.metrics
    for key in ("image_auroc", "pixel_auroc", "image_f1", "pixel_f1", "aupro", "fpr_at_full_recall"):
        assert m[key] is not None and 0.0 <= m[key] <= 1.0, key
    assert m["image_auroc"] >= 0.9
    assert m["pixel_auroc"] >= 0.9
    assert set(m["per_defect"]) == {"scratch", "spot", "crack"}
    assert run.timings["fit_s"] > 0 and run.latency["e2e_ms_p50"] > 0
    assert run.environment["torch"] and run.environment["cpu"]


def test_a_finished_run_keeps_records_maps_curves_and_a_safe_checkpoint(trained_patchcore):
    run, registry, _ = trained_patchcore
    art = RunArtifacts(registry.run_dir(run.id))
    n = SMALL_DEMO["n_test_good"] + 3 * SMALL_DEMO["n_test_per_defect"]
    assert len(art.records) == n
    assert art.maps.shape[0] == n and art.masks.shape == art.maps.shape
    assert art.masks[art.records["label"].to_numpy() == 1].any(axis=(1, 2)).all()
    assert art.curves()["roc"]["fpr"][0] == 0.0
    assert art.checkpoint.suffix == ".safetensors"


def test_predicting_a_new_image_scores_a_defect_above_a_clean_image(trained_patchcore):
    run, registry, _ = trained_patchcore
    model = LoadedModel(registry.run_dir(run.id))
    clean, _ = make_demo_image("good", seed=999)
    defective, mask = make_demo_image("spot", seed=999)
    preds = model.predict([clean, defective])
    assert preds[1].score > preds[0].score
    assert preds[1].is_anomalous is True
    # The anomaly map peaks inside the defect.
    amap = preds[1].anomaly_map
    peak = np.unravel_index(np.argmax(amap), amap.shape)
    scale = mask.shape[0] / amap.shape[0]
    y, x = int(peak[0] * scale), int(peak[1] * scale)
    ys, xs = np.nonzero(mask)
    assert ys.min() - 8 <= y <= ys.max() + 8 and xs.min() - 8 <= x <= xs.max() + 8


def test_test_records_and_the_upload_path_give_the_same_score(trained_patchcore):
    run, registry, _ = trained_patchcore
    art = RunArtifacts(registry.run_dir(run.id))
    model = LoadedModel(art.run_dir)
    first = art.records.iloc[-1]
    pred = model.predict([first["path"]])[0]
    assert pred.score == pytest.approx(first["score"], rel=1e-5)
