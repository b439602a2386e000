"""On real MVTec AD grid (only where ../shared holds it): the defect-centred embedding finds same-defect cases.

A quality engineer querying with a "broken" grid should get other broken grids back, not just any grid with
the same overall texture. That is what the defect-centred embedding is for, so on real data it must beat the
global one at retrieving the query's defect type (leave-one-out over the test set, measured at indexing).
"""

from __future__ import annotations

import pytest

from core.store.runs import DONE


def _at(table: dict, k: int):
    # run.retrieval went through JSON in the registry, so its k keys are strings
    return table.get(k, table.get(str(k)))


@pytest.mark.real_data("grid")
def test_defect_centred_embedding_retrieves_the_same_defect_type_better_than_global(grid_run):
    finished, status = grid_run
    assert status == DONE, finished.error
    run = finished
    retrieval = finished.retrieval
    assert "global" in retrieval and "defect" in retrieval, finished.extra.get("index_error", retrieval)
    assert retrieval["points"] == 78 + 264  # test + train images of grid

    print(f"\nretrieval precision on grid, run {run.id} (leave-one-out over {retrieval['defect']['n']} test images)")
    print(
        f"{'embedding':<10}"
        + "".join(f"{f'{what}@{k}':>21}" for what in ("same_label", "same_defect_type") for k in (1, 5, 10))
    )
    for using in ("global", "defect"):
        row = retrieval[using]
        print(
            f"{using:<10}"
            + "".join(f"{_at(row[what], k):>21.3f}" for what in ("same_label", "same_defect_type") for k in (1, 5, 10))
        )

    defect_p5 = _at(retrieval["defect"]["same_defect_type"], 5)
    global_p5 = _at(retrieval["global"]["same_defect_type"], 5)
    assert defect_p5 > global_p5, f"defect-centred precision@5 {defect_p5:.3f} <= global {global_p5:.3f}"
