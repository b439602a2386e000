"""Retrain with feedback (core.jobs.feedback): a model without a memory bank keeps its normal marks, and a new run
trains on them and is not evaluated on them.

Each test works on its own copy of the session's demo runs (feedback writes marks into a run's folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import settings
from core.data import datasets
from core.engine import feedback
from core.errors import WorkbenchError
from core.jobs.feedback import retrain_with_feedback
from core.store.runs import RunRegistry
from core.store.versions import RunVersions
from tests.conftest import worst_false_alarm


def test_a_model_without_a_bank_keeps_the_mark_and_retrains_with_it(demo_runs_copy):
    run_id = demo_runs_copy[1]  # EfficientAD
    run_dir = settings().run_dir(run_id)
    image = worst_false_alarm(run_dir)

    result = feedback.mark_normal(run_dir, image.path, note="fine")
    assert result.version is None and "Retrain with feedback" in result.message
    new = retrain_with_feedback(run_id, start=False)

    spec = datasets.DatasetSpec.from_dict(new.dataset)
    assert Path(image.path) in datasets.train_images(spec)  # the accepted normal is trained on
    assert image.path not in [s.path for s in datasets.test_samples(spec)]  # and not evaluated on
    datamodule = datasets.build_datamodule(spec)  # what the queued run's fit will read (training it: minutes)
    datamodule.setup()
    assert image.path in set(datamodule.train_data.samples["image_path"])
    assert image.path not in set(datamodule.test_data.samples["image_path"])
    queued = RunRegistry().get(new.id)
    assert (queued.status, queued.model, queued.extra["retrained_from"]) == ("queued", "efficientad", run_id)
    assert all(mark.applied for mark in RunVersions(run_dir).feedback())


def test_a_run_with_no_image_marked_normal_has_nothing_to_retrain_with_and_queues_nothing(artifacts):
    registry = RunRegistry()
    run = registry.create("padim", {"kind": "demo", "category": "demo", "root": "/nowhere"}, {}, 0)

    with pytest.raises(WorkbenchError, match=f"Run {run.id} has no images marked normal"):
        retrain_with_feedback(run.id, start=False)

    assert [r.id for r in registry.list()] == [run.id]
