"""The trust checks as views (core.views.trust): the detection-limit table, curves and per-run summary, and the
training-set audit table, all read from stored results (nothing here runs a model).

The limit is a measured result written out by hand: recall per (shape, contrast, area) at both thresholds, its
smallest-caught rows found by ``core.engine.limit.smallest_caught`` as a measurement would find them.
"""

from __future__ import annotations

import itertools

import pytest

from core.engine.audit import AuditEntry, AuditResult
from core.engine.limit import LimitResult, smallest_caught
from core.store.artifacts import RunArtifacts, write_json
from core.store.runs import DONE, RunRegistry
from core.views import trust

AREAS = {0.001: 65, 0.005: 328, 0.02: 1311}  # fraction of a 256² image: px
RECALL = {  # zero-escape recall at the three areas, smallest first
    ("scratch", 0.3): (0.2, 0.6, 0.97),
    ("scratch", 0.6): (0.5, 0.96, 1.0),
    ("spot", 0.3): (0.0, 0.1, 0.5),  # never caught 95 % of the time
    ("spot", 0.6): (0.96, 1.0, 1.0),
}


def measured_limit(run_id: str = "r1", zero_escape: float | None = 0.3) -> LimitResult:
    cells = [
        {
            "shape": shape,
            "contrast": contrast,
            "area": area,
            "area_fraction": area,
            "area_px": px,
            "n": 20,
            "recall_zero_escape": recall,
            "recall_run": recall**3,  # the run's own threshold is higher: fewer caught
        }
        for (shape, contrast), recalls in RECALL.items()
        for (area, px), recall in zip(AREAS.items(), recalls, strict=True)
    ]
    points = ("zero_escape", "run")
    smallest = [
        smallest_caught(cells, s, c, p) for s, c, p in itertools.product(("scratch", "spot"), (0.3, 0.6), points)
    ]
    return LimitResult(
        run_id=run_id,
        model="patchcore",
        category="demo",
        seed=0,
        shapes=["scratch", "spot"],
        areas=list(AREAS),
        contrasts=[0.3, 0.6],
        n_per_cell=20,
        image_px=65536,
        n_normal_images=4,
        thresholds={"run": 0.5, "zero_escape": zero_escape},
        normal_flagged={"run": 0.0, "zero_escape": 0.25},
        cells=cells,
        smallest=smallest,
    )


def test_the_limit_table_gives_the_smallest_area_caught_per_shape_and_contrast_at_both_thresholds():
    table = trust.limit_table(measured_limit()).set_index(["shape", "contrast"])

    assert len(table) == 4
    assert table.loc[("scratch", 0.6), "zero_escape px"] == 328
    assert table.loc[("scratch", 0.6), "zero_escape %"] == pytest.approx(0.5)
    assert table.loc[("spot", 0.6), "zero_escape px"] == 65
    assert table.loc[("scratch", 0.3), "zero_escape px"] == 1311
    # Not caught 95 % of the time at any area measured: no size, rather than the largest one.
    assert table.loc[("spot", 0.3), ["zero_escape px", "zero_escape %"]].isna().all()
    assert table.loc[("scratch", 0.6), "run px"] == 1311  # the run's higher threshold needs a bigger defect
    assert table.loc[("spot", 0.6), "run px"] == 328


def test_the_limit_curves_show_recall_rising_with_area_one_curve_per_contrast_and_shape():
    result = measured_limit()
    curves = trust.limit_curves(result, "zero_escape")
    scratch = curves[(curves["shape"] == "scratch") & (curves["contrast"] == "0.60")].sort_values("area_pct")
    assert scratch["recall"].tolist() == [0.5, 0.96, 1.0]
    assert scratch["area_pct"].tolist() == pytest.approx([0.1, 0.5, 2.0])

    fig = trust.limit_figure(result, "zero_escape")
    assert len(fig.data) == 4  # 2 shapes x 2 contrasts
    assert fig.layout.title.text == "Detection limit of patchcore (r1) at zero escapes"
    assert any(a.text == "95%" for a in fig.layout.annotations)  # the catch-rate line


def test_a_run_without_a_zero_escape_threshold_gets_an_empty_limit_chart_that_says_so():
    result = measured_limit(zero_escape=None)
    for cell in result.cells:
        cell["recall_zero_escape"] = None
    fig = trust.limit_figure(result, "zero_escape")
    assert not fig.data and "no such threshold" in fig.layout.title.text


def test_the_limit_summary_has_a_row_per_run_with_a_measured_limit_beside_its_auroc(artifacts):
    registry = RunRegistry()
    measured, unmeasured = (registry.create("patchcore", {"kind": "demo", "category": "demo"}, {}, 0) for _ in "ab")
    registry.finish(measured.id, DONE, metrics={"image_auroc": 0.97})
    write_json(RunArtifacts(registry.run_dir(measured.id)).limit_path, measured_limit(measured.id).to_dict())

    summary = trust.limit_summary([registry.get(measured.id), registry.get(unmeasured.id)], registry)

    assert summary["run"].tolist() == [measured.id]
    row = summary.iloc[0]
    assert row["image AUROC"] == 0.97 and row["contrast"] == 0.6  # at the strongest contrast measured
    assert row["scratch px"] == 328 and row["spot px"] == 65


def test_the_audit_table_lists_the_most_anomalous_training_images_first_with_their_robust_z():
    entries = [
        AuditEntry(
            f"/d/train/good/{i:03d}.png", f"{i:03d}.png", i % 3, 1.0 / (i + 1), i + 1, 12.34 / (i + 1), i == 0, i == 1
        )
        for i in range(5)
    ]
    result = AuditResult(
        dataset={"kind": "demo", "category": "demo"}, dataset_key="demo", k=3, seed=0, params={}, entries=entries
    )

    table = trust.audit_table(result, n=3)

    assert table["rank"].tolist() == [1, 2, 3] and table["image"].tolist() == ["000.png", "001.png", "002.png"]
    assert table["robust z"].tolist() == [12.3, 6.2, 4.1]
    assert table["suspicious"].tolist() == [True, False, False] and table["excluded"].tolist() == [False, True, False]
