"""Launching runs from the pages (core.jobs.launch): the first demo run, re-runs, an uploaded zip, retraining after a
training-set audit, and no worker at all where ``AW_AUTOSTART_WORKER=0``."""

from __future__ import annotations

import io
import zipfile

import pytest

from core.config import settings
from core.data import datasets, exclusions
from core.data.demo_data import make_demo_image
from core.data.images import to_png_bytes
from core.errors import WeightsError
from core.jobs import launch
from core.jobs import queue as jobs
from core.models import weights
from core.store.runs import DONE, QUEUED, RunRegistry
from tests.conftest import FAST_PATCHCORE

TINY_DEMO = dict(n_train=4, n_test_good=2, n_test_per_defect=1, size=64)


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")


def test_the_first_run_plan_is_patchcore_with_the_best_backbone_this_machine_has(artifacts):
    plan = launch.first_run_plan()
    assert plan.params == {"backbone": weights.default_backbone()}
    assert plan.params["backbone"] in weights.available_backbones()
    assert f"**{plan.params['backbone']}**" in plan.explanation and "demo dataset" in plan.explanation


def test_without_any_backbone_weights_the_first_run_is_refused_with_how_to_get_them(artifacts, monkeypatch):
    monkeypatch.setattr(weights, "BUNDLED", {}, raising=False)  # nothing imported, nothing bundled
    plan = launch.first_run_plan()
    assert plan.params is None
    assert "and it is offline" in plan.explanation and "aw weights import" in plan.explanation

    with pytest.raises(WeightsError, match="No pretrained backbone weights are available"):
        launch.queue_first_run(plan)
    assert RunRegistry().list() == []


def test_with_autostart_off_a_queued_run_waits_and_no_worker_is_started(artifacts):
    run = RunRegistry().create("patchcore", {"kind": "demo", "category": "demo", "root": "/nowhere"}, {}, 0)
    assert launch.keep_queue_moving() is False and launch.start_worker() is False
    assert not jobs.worker_alive() and RunRegistry().get(run.id).status == QUEUED


def test_a_rerun_queues_the_same_model_data_parameters_and_seed(artifacts):
    old = launch.queue("patchcore", datasets.demo(**TINY_DEMO), FAST_PATCHCORE, seed=3)

    new = launch.rerun(old.id)

    assert new.id != old.id
    assert (new.status, new.model, new.params, new.seed, new.dataset) == (QUEUED, old.model, old.params, 3, old.dataset)


def test_retraining_after_an_audit_repeats_the_latest_finished_run_without_the_excluded_image(artifacts):
    spec = datasets.demo(**TINY_DEMO)
    finished = launch.queue("patchcore", spec, FAST_PATCHCORE, seed=7)
    RunRegistry().finish(finished.id, DONE)
    exclusions.exclude_images(spec, ["000.png"], reason="crack in a good image")

    run = launch.retrain_without_excluded(spec)

    assert (run.status, run.model, run.params, run.seed) == (QUEUED, "patchcore", finished.params, 7)
    assert run.dataset["excluded"] == ["000.png"]
    trained_on = {p.name for p in datasets.train_images(datasets.DatasetSpec.from_dict(run.dataset))}
    assert "000.png" not in trained_on and "001.png" in trained_on


def test_an_uploaded_zip_is_imported_and_its_temporary_copy_removed(artifacts):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(6):
            zf.writestr(f"normal/ok_{i}.png", to_png_bytes(make_demo_image("good", seed=i, size=64)[0]))

    report = launch.import_zip_bytes("line3", buf.getvalue(), filename="line3.zip")

    assert report.spec.category == "line3" and datasets.list_custom() == ["line3"]
    assert list((settings().datasets_dir / "uploads").iterdir()) == []
