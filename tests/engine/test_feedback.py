"""Correct a false call without retraining: mark normal → a new version; undo → the parent; honest before/after.

Each test works on its own copy of the session's demo runs (feedback writes versions into a run's folder)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.config import settings
from core.engine import feedback
from core.engine.inference import LoadedModel
from core.errors import WorkbenchError
from core.store.artifacts import BankProvenance, RunArtifacts
from core.store.versions import RunVersions, VersionError
from tests.conftest import worst_false_alarm


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_marking_a_false_alarm_normal_makes_a_new_version_that_scores_it_lower(demo_runs_copy):
    run_dir = settings().run_dir(demo_runs_copy[0])
    image = worst_false_alarm(run_dir)
    trained = sha(run_dir / "model.safetensors")

    result = feedback.mark_normal(run_dir, image.path, note="glare, not a defect", who="ana")

    v = result.version
    assert (v.version, v.parent, v.who, v.note) == (2, 1, "ana", "glare, not a defect")
    assert RunVersions(run_dir).current() == 2
    assert sha(run_dir / "model.safetensors") == trained  # never overwritten
    v1, v2 = LoadedModel(run_dir, version=1), LoadedModel(run_dir)  # the default is the current version
    assert v2.version == 2
    assert v2.module.model.memory_bank.shape[0] == v1.module.model.memory_bank.shape[0] + result.added > 0
    assert len(BankProvenance.load(v2.model_dir)) == result.bank_size  # the new rows keep their provenance
    assert BankProvenance.load(v2.model_dir).train_paths[-1] == image.path
    assert v2.predict([image.path])[0].score < v1.predict([image.path])[0].score
    assert result.seconds < 10


def test_undo_returns_to_the_parent(demo_runs_copy):
    run_dir = settings().run_dir(demo_runs_copy[0])
    image = worst_false_alarm(run_dir)
    feedback.mark_normal(run_dir, image.path)

    back = feedback.undo(run_dir)

    assert back.version == 1 and RunVersions(run_dir).current() == 1
    assert LoadedModel(run_dir).predict([image.path])[0].score == pytest.approx(image.score, rel=1e-5)
    assert RunVersions(run_dir).model_dir(2).is_dir()  # the undone version is kept
    with pytest.raises(VersionError):
        feedback.undo(run_dir)


def test_before_and_after_are_measured_on_the_same_remaining_images(demo_runs_copy):
    run_dir = settings().run_dir(demo_runs_copy[0])
    records = RunArtifacts(run_dir).records
    image = worst_false_alarm(run_dir)
    feedback.mark_normal(run_dir, image.path)

    table = feedback.compare_versions(run_dir, 1, 2)

    assert table["n_images"] == len(records) - 1 and table["left_out"] == [image.path]
    v1, v2 = table["rows"]
    assert {"tp", "fp", "tn", "fn", "fpr_at_full_recall", "image_auroc"} <= set(v1)
    assert v1["tp"] + v1["fp"] + v1["tn"] + v1["fn"] == table["n_images"] == v2["tp"] + v2["fp"] + v2["tn"] + v2["fn"]
    assert v2["fp"] <= v1["fp"]  # a bigger bank only lowers scores


def test_an_escape_is_kept_as_a_defect_with_its_type(demo_runs_copy):
    run_dir = settings().run_dir(demo_runs_copy[0])
    records = RunArtifacts(run_dir).records
    result = feedback.mark_defect(run_dir, records.iloc[0].path, "scratch", note="missed at 0.3")
    assert result.version is None
    (mark,) = RunVersions(run_dir).feedback()
    assert (mark.kind, mark.defect_type, mark.note) == ("defect", "scratch", "missed at 0.3")
    with pytest.raises(WorkbenchError, match="defect type"):
        feedback.mark_defect(run_dir, records.iloc[0].path, " ")
