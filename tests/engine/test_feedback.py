"""Correct a false call without retraining: mark normal → a new version; undo → the parent; honest before/after.

Each test works on its own copy of the session's demo runs (feedback writes versions into a run's folder)."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from core.cli import feedback as cli_feedback
from core.config import settings
from core.data import datasets
from core.engine import feedback
from core.engine.inference import LoadedModel
from core.errors import WorkbenchError
from core.jobs.feedback import retrain_with_feedback
from core.store.artifacts import BankProvenance, RunArtifacts
from core.store.runs import RunRegistry
from core.store.versions import RunVersions, VersionError


def worst_false_alarm(run_dir: Path):
    records = RunArtifacts(run_dir).records
    return records[records.label == 0].sort_values("score").iloc[-1]


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


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="aw")
    cli_feedback.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_the_command_line_marks_lists_and_undoes(demo_runs_copy, capsys):
    run_id = demo_runs_copy[0]
    image = worst_false_alarm(settings().run_dir(run_id))

    assert run_cli("feedback", run_id, image.path, "--normal", "--note", "dust", "--who", "ana") == 0
    assert capsys.readouterr().out.startswith("v2 (from v1): +")
    run_cli("versions", run_id)
    listing = capsys.readouterr().out
    assert "* v2" in listing and "dust" in listing and "ana" in listing
    run_cli("undo", run_id)
    assert "back at v1" in capsys.readouterr().out
    with pytest.raises(WorkbenchError, match="--normal"):
        run_cli("feedback", run_id, image.path)
    with pytest.raises(WorkbenchError):
        run_cli("versions", "no-such-run")


def test_marking_an_image_labelled_defective_normal_is_done_with_a_warning(demo_runs_copy, capsys):
    run_id = demo_runs_copy[0]
    records = RunArtifacts(settings().run_dir(run_id)).records
    defect = records[records.label == 1].iloc[0]
    normal = worst_false_alarm(settings().run_dir(run_id))

    assert run_cli("feedback", run_id, defect.path, "--normal") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"warning: This image is labelled defective ({defect.defect_type})")
    assert "v2 (from v1)" in out  # the engineer may know better than the label: warned, not refused
    assert feedback.mark_normal(settings().run_dir(run_id), normal.path).warning is None
