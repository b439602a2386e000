"""The run queue (core.jobs.queue): a run is checked when it is queued, executed by the one process that claims it,
and only one worker takes runs from the queue at a time."""

from __future__ import annotations

import fcntl
import shutil

import pytest

from core.config import settings
from core.data.datasets import custom, demo
from core.errors import RunError, WeightsError
from core.jobs import queue as jobs
from core.store.runs import FAILED, QUEUED, RunRegistry
from tests.conftest import FAST_PATCHCORE, import_photos

TINY_DEMO = dict(n_train=4, n_test_good=2, n_test_per_defect=1, size=64)


def test_queuing_a_run_without_weights_fails_before_it_starts(artifacts):
    with pytest.raises(WeightsError, match="wide_resnet50_2"):
        jobs.submit(
            "patchcore",
            demo(n_train=4, n_test_good=2, n_test_per_defect=1),
            {"backbone": "wide_resnet50_2"},
            start=False,
        )


def test_a_queued_run_is_executed_by_the_first_claim_only(artifacts):
    spec = demo(**TINY_DEMO)
    run = jobs.submit("patchcore", spec, FAST_PATCHCORE, start=False)
    assert RunRegistry().get(run.id).status == QUEUED and not jobs.worker_alive()  # start=False: no worker
    shutil.rmtree(spec.path / "train")  # its data went away after it was queued: it fails at once, with a reason

    assert jobs.execute_claimed(run.id) == FAILED
    assert "has no training images" in RunRegistry().get(run.id).error

    with pytest.raises(RunError, match=rf"Run {run.id} is not queued \(status: failed\)"):
        jobs.execute_claimed(run.id)


def test_a_second_worker_leaves_the_queue_to_the_one_holding_the_lock(artifacts):
    run = RunRegistry().create("patchcore", {"kind": "demo", "category": "demo", "root": "/nowhere"}, {}, 0)
    with open(settings().artifacts / "worker.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a worker is running: this test holds its lock
        assert jobs.worker_alive()
        assert jobs.ensure_worker() is False  # no second one is started beside it
        jobs.worker_loop()  # returns at once: another process is the worker
        assert RunRegistry().get(run.id).status == QUEUED
    assert not jobs.worker_alive()  # the lock is free again once its holder is gone


def test_a_run_that_follows_the_data_records_the_size_chosen_for_its_images_and_why(artifacts, tmp_path):
    import_photos("line3", tmp_path / "photos", size=800)

    run = jobs.submit("patchcore", custom("line3"), {"backbone": "tf_efficientnet_lite0"}, start=False)
    stored = RunRegistry().get(run.id)
    assert stored.params["image_size"] == 512 and stored.params["max_bank_size"] == 8_000
    assert "800×800" in stored.extra["chosen_for_data"]["why"]

    small = jobs.submit("patchcore", demo(**TINY_DEMO), {"backbone": "tf_efficientnet_lite0"}, start=False)
    assert RunRegistry().get(small.id).params["image_size"] == 256
    given = jobs.submit("patchcore", custom("line3"), FAST_PATCHCORE, start=False)
    assert RunRegistry().get(given.id).params["image_size"] == 128 and "chosen_for_data" not in given.extra


def test_a_run_on_an_mvtec_category_not_downloaded_yet_follows_its_published_image_size(artifacts, monkeypatch):
    from core.data.datasets import mvtec

    monkeypatch.setenv("AW_OFFLINE", "0")  # online: the category is downloaded when the run starts
    monkeypatch.delenv("HF_HUB_OFFLINE")
    tile = jobs.submit("patchcore", mvtec("tile"), {"backbone": "tf_efficientnet_lite0"}, start=False)
    nut = jobs.submit("patchcore", mvtec("metal_nut"), {"backbone": "tf_efficientnet_lite0"}, start=False)
    assert RunRegistry().get(tile.id).params["image_size"] == 512 and "840×840" in tile.extra["chosen_for_data"]["why"]
    assert RunRegistry().get(nut.id).params["image_size"] == 256  # 700² photos: below the 768-px rule
