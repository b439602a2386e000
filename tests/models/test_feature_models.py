"""The backbone models of core.models.feature_models (PaDiM, DFM, STFPM, FastFlow, FRE), as a user meets them: each
trains offline on the EfficientNet-Lite0 that ships with the product, ranks a defect above a clean image, scores a
test image alone as it scored it among others, is indexed and timed, and (if it trains with gradients) keeps its
loss curve.

Each model trains once per session on tiny synthetic data with its small settings (``conftest.SMALL``).
"""

from __future__ import annotations

import pytest

from core import models
from core.data.demo_data import make_demo_image
from core.engine.inference import LoadedModel
from core.store.runs import RunRegistry

BACKBONE_MODELS = [name for name, e in models.REGISTRY.items() if e.backbone_stages and name != "patchcore"]


@pytest.mark.parametrize("name", BACKBONE_MODELS)
def test_each_model_trains_offline_records_its_backbone_and_ranks_a_defect_above_a_clean_image(model_runs, name):
    run = RunRegistry().get(model_runs[name])
    assert run.params["backbone"] == "tf_efficientnet_lite0"  # recorded: the Compare page names it
    assert run.metrics["image_auroc"] >= 0.8, run.metrics
    assert run.metrics["pixel_auroc"] is not None
    model = LoadedModel(RunRegistry().run_dir(run.id))
    clean, _ = make_demo_image("good", seed=4242, size=128)
    broken, _ = make_demo_image("spot", seed=4242, size=128)
    clean_pred, broken_pred = model.predict([clean, broken])
    assert broken_pred.score > clean_pred.score
    assert broken_pred.anomaly_map.shape == clean_pred.anomaly_map.shape == (128, 128)


@pytest.mark.parametrize("name", BACKBONE_MODELS)
def test_a_test_image_scored_again_alone_gets_its_stored_score(model_runs, name):
    # Uploads score one image; the test pass scored batches: a verdict must not depend on the company it was in
    # (anomalib's CFlow fails this: it normalises by the batch maximum, see core/models/feature_models.py).
    from core.store.artifacts import RunArtifacts

    run_dir = RunRegistry().run_dir(model_runs[name])
    records = RunArtifacts(run_dir).records
    model = LoadedModel(run_dir)
    alone = [model.predict([p])[0].score for p in records.path[:4]]
    assert alone == pytest.approx(list(records.score[:4]), rel=1e-4)


@pytest.mark.parametrize("name", BACKBONE_MODELS)
def test_each_models_run_is_indexed_for_similar_cases_and_timed(model_runs, name):
    run = RunRegistry().get(model_runs[name])
    assert run.retrieval and run.retrieval["points"] > 0, run.extra
    assert run.latency["e2e_ms_p50"] > 0 and run.timings["fit_s"] > 0


def test_trained_models_write_a_loss_curve_and_one_pass_models_do_not(model_runs):
    from core.store.artifacts import RunArtifacts

    for name, run_id in model_runs.items():
        curve = RunArtifacts(RunRegistry().run_dir(run_id)).loss_curve()
        if models.get_entry(name).fit_phase == "training":
            assert curve and all(isinstance(p["loss"], float) for p in curve), name
        else:
            assert not curve, name
