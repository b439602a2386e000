"""A run's versions: feedback makes a new version, never an edit; undo returns to the parent."""

from __future__ import annotations

import json

import pytest

from core.store.versions import Feedback, RunVersions, VersionError


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "runs" / "r1"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"model": "patchcore", "params": {}}))
    (folder / "model.safetensors").write_bytes(b"trained")
    return folder


def test_a_run_without_feedback_is_at_its_trained_version_1(run_dir):
    store = RunVersions(run_dir)
    assert store.current() == 1
    assert [(v.version, v.parent, v.change) for v in store.lineage()] == [(1, None, "trained")]
    assert store.model_dir() == run_dir  # version 1 is what training left in the run folder
    assert not (run_dir / "versions.json").exists()  # reading writes nothing


def test_feedback_makes_a_new_version_in_its_own_folder_and_the_old_one_is_untouched(run_dir):
    store = RunVersions(run_dir)
    v2 = store.create(1, "mark normal a.png", "ana", "glare", {"model.safetensors": b"v2"}, feedback_image="/d/a.png")
    assert (v2.version, v2.parent, v2.who, v2.note) == (2, 1, "ana", "glare")
    assert store.current() == 2
    assert (store.model_dir(2) / "model.safetensors").read_bytes() == b"v2"
    assert (run_dir / "model.safetensors").read_bytes() == b"trained"
    v3 = store.create(2, "mark normal b.png", None, "", {"model.safetensors": b"v3"}, feedback_image="/d/b.png")
    assert store.excluded(3) == {"/d/a.png", "/d/b.png"}  # feedback images leave the evaluation set, cumulatively
    assert store.excluded(1) == set()
    assert v3.who  # the acting user by default


def test_undo_returns_to_the_parent_and_keeps_the_undone_version(run_dir):
    store = RunVersions(run_dir)
    store.create(1, "change", "ana", "", {"f": b"x"})
    assert store.undo().version == 1
    assert store.current() == 1
    assert store.model_dir(2).is_dir() and len(store.lineage()) == 2  # kept, and can be picked again
    with pytest.raises(VersionError, match="nothing to undo"):
        store.undo()
    assert store.set_current(2).version == 2
    assert [e["event"] for e in store.events()] == ["create", "undo", "pick"]


def test_a_branch_from_an_older_version_gets_the_next_number(run_dir):
    store = RunVersions(run_dir)
    store.create(1, "first", "ana", "", {"f": b"1"})
    store.undo()
    v3 = store.create(1, "second", "ana", "", {"f": b"2"})
    assert (v3.version, v3.parent) == (3, 1)
    assert (store.model_dir(2) / "f").read_bytes() == b"1"  # never overwritten


def test_an_unknown_version_is_a_clear_error(run_dir):
    with pytest.raises(VersionError, match="has no version 7"):
        RunVersions(run_dir).model_dir(7)


def test_feedback_marks_are_kept_with_the_run(run_dir):
    store = RunVersions(run_dir)
    store.add_feedback(Feedback("defect", "/d/c.png", "ana", 1.0, "missed", defect_type="scratch"))
    store.add_feedback(Feedback("normal", "/d/a.png", "bo", 2.0))
    store.mark_applied(["/d/a.png"])
    marks = store.feedback()
    assert [(f.kind, f.defect_type, f.applied) for f in marks] == [("defect", "scratch", False), ("normal", None, True)]
