"""`aw sweep` (core.cli.sweep): the plan with its total before anything runs, queuing with --yes, and a finished
sweep read back with its Pareto-optimal points and a recommendation."""

from __future__ import annotations

from core.store.runs import RunRegistry
from tests.conftest import cli


def test_a_sweep_is_planned_with_its_total_and_queued_only_with_yes(artifacts):
    env = {"AW_AUTOSTART_WORKER": "0"}
    plan = cli("sweep", "--dataset", "demo", "--values", "image_size=64,128", "--values", "num_neighbors=1,9", env=env)

    assert plan.returncode == 0, plan.stderr
    assert "4 runs of patchcore on Demo / demo; estimated in all:" in plan.stdout
    assert "Nothing queued: add --yes" in plan.stdout and RunRegistry().list() == []

    queued = cli("sweep", "--dataset", "demo", "--values", "image_size=64,128", "--yes", env=env)
    assert "queued 2 runs as sweep-" in queued.stdout
    assert len(RunRegistry().list()) == 2


def test_a_bad_value_is_one_clear_line_and_exit_code_2(artifacts):
    bad = cli("sweep", "--dataset", "demo", "--values", "coreset_sampling_ratio=0.1,lots")

    assert bad.returncode == 2 and "must be a float" in bad.stderr and "Traceback" not in bad.stderr


def test_a_finished_sweep_is_shown_with_its_front_and_a_recommendation(finished_sweep):
    shown = cli("sweep", "show", finished_sweep, "--cost", "e2e_ms_p50")

    assert shown.returncode == 0, shown.stderr
    assert "pareto_optimal" in shown.stdout and "| yes" in shown.stdout
    assert "Recommended: image_size=" in shown.stdout
    assert finished_sweep in cli("sweep", "list").stdout
