"""A sweep's view (core.views.sweep): one row per point, the Pareto front, a recommendation, and the charts."""

from __future__ import annotations

import pandas as pd

from core.jobs import sweep
from core.views import sweep as view


def test_the_pareto_front_keeps_only_points_no_other_beats_on_quality_and_cost():
    frame = pd.DataFrame(
        {
            "run": list("abcde"),
            "status": ["done"] * 4 + ["running"],
            "image_size": [256, 384, 512, 640, 768],
            "image_auroc": [0.95, 0.99, 0.98, 0.995, None],
            "fit_s": [30.0, 60.0, 90.0, 200.0, None],
        }
    )

    assert view.pareto(frame, "image_auroc", "fit_s").tolist() == [True, True, False, True, False]
    line = view.recommend(frame, "image_auroc", "fit_s", ["image_size"])
    # 384 px is within 0.005 of the best (640 px) at under a third of its fit
    assert line.startswith("Recommended: image_size=384 — image AUROC 0.990 at 60.0 fit s")
    assert "the best (image_size=640) adds 0.005 for 3.3× the cost" in line


def test_without_finished_points_the_recommendation_says_so():
    frame = pd.DataFrame({"run": ["a"], "status": ["queued"], "image_auroc": [None], "fit_s": [None]})

    assert view.recommend(frame, "image_auroc", "fit_s").startswith("No finished point yet")


def test_a_finished_sweep_shows_each_metric_against_each_parameter_and_quality_against_cost(finished_sweep):
    runs = sweep.sweep_runs(finished_sweep)
    frame = view.sweep_frame(runs)
    swept = view.swept_parameters(runs)

    assert swept == ["image_size", "coreset_sampling_ratio"]
    assert len(frame) == 4 and frame[["image_auroc", "pixel_auroc", "fit_s", "e2e_ms_p50"]].notna().all().all()
    figures = view.metric_charts(frame, swept)
    assert [f.layout.title.text for f in figures] == [
        "Quality against image_size",
        "Quality against coreset_sampling_ratio",
    ]
    front = view.tradeoff_chart(frame, "image_auroc", "e2e_ms_p50", swept)
    symbols = list(front.data[0].marker.symbol)
    assert len(symbols) == 4 and "star" in symbols  # at least one point is on the front, and marked
    assert view.recommend(frame, "image_auroc", "e2e_ms_p50", swept).startswith("Recommended: image_size=")
