"""The detection limit: synthetic defects of controlled size on a run's held-out normal images, scored by its model."""

from __future__ import annotations

import pytest

from core.engine.limit import detection_limit, load_limit, smallest_caught
from core.errors import WorkbenchError
from core.store.artifacts import RunArtifacts
from core.store.runs import RunRegistry

SMALL_GRID = dict(areas=(0.0002, 0.004, 0.02), contrasts=(0.3, 0.6), n_per_cell=4)


def test_measuring_a_runs_limit_gives_recall_rising_with_area_and_a_smallest_caught_size(demo_runs):
    run_id = demo_runs[0]  # PatchCore on the demo data
    result = detection_limit(run_id, seed=0, **SMALL_GRID)

    assert result.thresholds["run"] is not None and result.thresholds["zero_escape"] is not None
    assert len(result.cells) == 3 * 3 * 2
    for shape in result.shapes:
        strong = sorted(
            (c for c in result.cells if c["shape"] == shape and c["contrast"] == 0.6), key=lambda c: c["area"]
        )
        assert strong[-1]["recall_zero_escape"] >= strong[0]["recall_zero_escape"]  # bigger defects: caught more
        assert strong[-1]["recall_zero_escape"] == 1.0  # 2 % of the image at a 153-level step: always caught
        assert strong[0]["area_px"] < 30 < strong[-1]["area_px"]  # a few pixels up to ~1,300
    statements = result.statements("zero_escape")
    assert len(statements) == 3 and all("95%" in s and "zero escapes" in s for s in statements)
    assert any(" px (" in s for s in statements)  # 'caught ... down to N px (x % of the image)'


def test_the_limit_is_stored_with_the_run_and_reads_back(demo_runs):
    run_id = demo_runs[0]
    result = detection_limit(run_id, shapes=["spot"], **SMALL_GRID)
    run_dir = RunRegistry().run_dir(run_id)

    assert RunArtifacts(run_dir).limit_path.is_file()
    again = load_limit(run_dir)
    assert again.cells == result.cells and again.statements() == result.statements()


def test_the_same_seed_gives_the_same_numbers(demo_runs):
    a = detection_limit(demo_runs[0], shapes=["scratch"], areas=(0.004,), contrasts=(0.3,), n_per_cell=3, save=False)
    b = detection_limit(demo_runs[0], shapes=["scratch"], areas=(0.004,), contrasts=(0.3,), n_per_cell=3, save=False)
    assert a.cells == b.cells


def test_smallest_caught_needs_every_larger_area_to_pass_too():
    cells = [
        {"shape": "spot", "contrast": 0.3, "area": a, "area_fraction": a, "area_px": int(a * 1e4), "recall_run": r}
        for a, r in ((0.001, 1.0), (0.002, 0.5), (0.004, 1.0), (0.01, 1.0))
    ]
    row = smallest_caught(cells, "spot", 0.3, "run")
    assert row["area_fraction"] == 0.004  # the lucky 0.001 cell does not count: 0.002 is missed half the time


def test_unknown_shapes_and_runs_are_clear_errors(demo_runs):
    with pytest.raises(WorkbenchError, match="dent"):
        detection_limit(demo_runs[0], shapes=["dent"])
    with pytest.raises(WorkbenchError, match="nope"):
        detection_limit("nope")
