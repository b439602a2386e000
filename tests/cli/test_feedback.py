"""`aw feedback`, `aw versions`, `aw undo` (core.cli.feedback): correct a false call from the command line.

Each test works on its own copy of the session's demo runs (feedback writes versions into a run's folder)."""

from __future__ import annotations

import argparse

import pytest

from core.cli import feedback as cli_feedback
from core.config import settings
from core.engine import feedback
from core.errors import WorkbenchError
from core.store.artifacts import RunArtifacts
from tests.conftest import worst_false_alarm


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
