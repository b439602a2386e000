"""The chart builders (core.views.charts): every figure renders for the demo runs, and an empty figure, not an
error, where there is no data yet."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from core.store.artifacts import RunArtifacts
from core.views import charts, comparison


def test_every_chart_builder_renders_for_the_demo_runs_and_for_no_data(demo):
    registry, runs = demo
    table = comparison.comparison_table(runs)
    records = RunArtifacts(registry.run_dir(runs[0].id)).records
    curves = {r.id: RunArtifacts(registry.run_dir(r.id)).curves() for r in runs}
    figures = [
        charts.metric_bars(comparison.metrics_long(table, comparison.averages_table(runs))),
        charts.latency_bars(comparison.latency_table(runs)),
        charts.fit_time_bars(table),
        charts.roc_pr_curves(curves),
        charts.score_histogram(comparison.score_split(records), runs[0].metrics["image_threshold"]),
        charts.per_defect_bars(comparison.per_defect_table(runs)),
    ]
    assert all(isinstance(f, go.Figure) and f.data for f in figures)
    assert {t.name for t in figures[3].data} >= {r.id for r in runs}  # both runs overlaid
    empties = [
        charts.metric_bars(pd.DataFrame()),
        charts.latency_bars(pd.DataFrame()),
        charts.roc_pr_curves({}),
        charts.score_histogram({}),
        charts.per_defect_bars(pd.DataFrame()),
    ]
    assert all(isinstance(f, go.Figure) and not f.data for f in empties)
