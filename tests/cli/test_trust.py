"""``aw audit`` and ``aw limit`` (core.cli.trust), through a parser built with its ``register``: a user's command,
then what the terminal shows and what is stored."""

from __future__ import annotations

import argparse
import shutil

import pytest

from core.cli import trust
from core.data import datasets, exclusions
from core.errors import WorkbenchError
from core.store.artifacts import RunArtifacts
from core.store.runs import RunRegistry


def aw(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="aw")
    trust.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_aw_limit_prints_the_smallest_defect_caught_per_shape_and_stores_it(demo_runs, capsys):
    run_id = demo_runs[0]
    assert aw("limit", run_id, "--areas", "0.0005", "0.02", "--contrasts", "0.6", "--samples", "3") == 0
    out = capsys.readouterr().out

    assert "smallest caught 95 % (px)" in out and "zero escapes" in out
    for shape in ("scratches", "spots", "stains"):
        assert f"patchcore ({run_id}): {shape} are" in out
    assert RunArtifacts(RunRegistry().run_dir(run_id)).limit()["n_per_cell"] == 3


def test_aw_audit_ranks_a_planted_defect_first_then_exclude_and_include_round_trip(artifacts, capsys):
    spec = datasets.demo()
    shutil.copy(spec.path / "test" / "spot" / "001.png", spec.path / "train" / "good" / "zz_planted.png")

    assert aw("audit", "demo", "--folds", "3", "--top", "5") == 0
    out = capsys.readouterr().out
    table_rows = [line for line in out.splitlines() if line.startswith("| 1 ")]
    assert table_rows and "zz_planted.png" in table_rows[0]  # rank 1
    assert "audited (25 images, 3-fold PatchCore" in out

    assert aw("audit", "demo", "--exclude", "zz_planted.png", "--reason", "spot") == 0
    assert "excluded from demo now: zz_planted.png" in capsys.readouterr().out
    assert datasets.demo().excluded == ("zz_planted.png",)

    assert aw("audit", "demo", "--stored", "--top", "3") == 0
    assert "excluded: zz_planted.png" in capsys.readouterr().out  # the stored audit shows the new state

    assert aw("audit", "demo", "--include", "zz_planted.png") == 0
    assert datasets.demo().excluded == ()
    assert exclusions.history(spec)[-1]["action"] == "include"


def test_mistakes_are_workbench_errors_with_one_clear_message(artifacts):
    with pytest.raises(WorkbenchError, match="not a training image"):
        aw("audit", "demo", "--exclude", "missing.png")
    with pytest.raises(WorkbenchError, match="No run with id"):
        aw("limit", "nope")
    with pytest.raises(SystemExit):  # argparse names the allowed shapes
        aw("limit", "x", "--shapes", "dent")
