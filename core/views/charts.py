"""Plotly figure builders for comparing runs. No Streamlit here: the page, the HTML report and notebooks
all draw the same figures from the plain tables of ``core.views.comparison``.

Every builder accepts empty input and then returns a figure that says "no data" instead of raising, so a
view with one run, or a run without pixel masks, still renders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.views.comparison import AVERAGE, METRICS, PATH_LABELS, PUBLISHED

TEMPLATE = "plotly_white"
PALETTE = qualitative.Plotly + qualitative.D3
NORMAL_COLOR, ANOMALOUS_COLOR, THRESHOLD_COLOR = "#2ca02c", "#d62728", "#111111"
PATH_COLORS = {"stock": "#9e9e9e", "ours": "#1f77b4", "openvino": "#9467bd"}


def _empty(title: str, message: str = "No data for this view yet.") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, template=TEMPLATE, height=220, xaxis_visible=False, yaxis_visible=False)
    return fig


def _colors(names) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(names))}


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, max(n, 1))
    return math.ceil(max(n, 1) / cols), cols


# --------------------------------------------------------------------------- quality metrics


def metric_bars(long: pd.DataFrame, title: str = "Quality metrics per category") -> go.Figure:
    """Grouped bars: one panel per metric, categories on x (the across-category average last), one bar
    colour per model setup. Published reference rows are hatched and named as such in the legend.

    ``long`` is ``comparison.metrics_long(...)``: columns series, category, source, metric, value.
    """
    if long is None or long.empty:
        return _empty(title)
    metrics = [m for m in METRICS.values() if m in set(long["metric"])]
    cats = sorted(c for c in long["category"].unique() if c != AVERAGE)
    cats += [AVERAGE] if AVERAGE in set(long["category"]) else []
    published_set = set(long.loc[long["source"] == PUBLISHED, "series"])
    measured = [s for s in dict.fromkeys(long["series"]) if s not in published_set]
    published = [s for s in dict.fromkeys(long["series"]) if s in published_set]
    colors = _colors(measured + published)
    rows, cols = _grid(len(metrics))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=metrics, vertical_spacing=0.16, horizontal_spacing=0.05)
    shown: set[str] = set()
    for i, metric in enumerate(metrics):
        r, c = divmod(i, cols)
        for series in measured + published:
            sub = long[(long["metric"] == metric) & (long["series"] == series)]
            if sub.empty:
                continue
            ref = series in published
            fig.add_trace(
                go.Bar(
                    x=sub["category"],
                    y=sub["value"],
                    name=series,
                    legendgroup=series,
                    showlegend=series not in shown,
                    marker_color=colors[series],
                    marker_pattern_shape="/" if ref else "",
                    opacity=0.55 if ref else 1.0,
                    text=[f"{v:.3f}" for v in sub["value"]],
                    textposition="outside",
                    cliponaxis=False,
                    textfont_size=10,
                    hovertemplate=f"<b>{series}</b><br>%{{x}}: %{{y:.3f}}<extra>{metric}</extra>",
                ),
                row=r + 1,
                col=c + 1,
            )
            shown.add(series)
    fig.update_xaxes(categoryorder="array", categoryarray=cats, type="category")
    fig.update_yaxes(range=[0, 1.12], tickformat=".1f")
    fig.update_layout(
        title=title,
        barmode="group",
        template=TEMPLATE,
        height=330 * rows + 80,
        legend=dict(orientation="h", yanchor="top", y=-0.08),
        uniformtext_minsize=8,
        uniformtext_mode="hide",
        margin=dict(t=80, b=40),
    )
    return fig


# --------------------------------------------------------------------------- speed


def latency_bars(lat: pd.DataFrame, title: str = "Inference speed per path") -> go.Figure:
    """End-to-end latency p50/p95 (ms) and images/s at batch 1 and at the best batch, one bar colour per
    inference path (stock anomalib / workbench / OpenVINO). Paths a run was not timed on are simply absent.

    ``lat`` is ``comparison.latency_table(...)``.
    """
    if lat is None or lat.empty:
        return _empty(title, "No latency measurements for these runs.")
    panels = [
        ("e2e_ms_p50", "End-to-end ms, p50 (lower is better)"),
        ("e2e_ms_p95", "End-to-end ms, p95 (lower is better)"),
        ("images_per_s_b1", "Images/s, batch 1 (higher is better)"),
        ("images_per_s_best", "Images/s, best batch (higher is better)"),
    ]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[1] for p in panels], vertical_spacing=0.22)
    lat = lat.assign(run=lat["series"].str.replace(" · ", "<br>") + "<br>" + lat["category"])  # short lines
    paths = list(dict.fromkeys(lat["path"]))
    for i, (field, _) in enumerate(panels):
        for path in paths:
            sub = lat[(lat["path"] == path)].dropna(subset=[field])
            if sub.empty:
                continue
            text = [
                f"{v:.1f}" + (f" (bs {int(b)})" if field == "images_per_s_best" and pd.notna(b) else "")
                for v, b in zip(sub[field], sub["best_batch_size"], strict=False)
            ]
            fig.add_trace(
                go.Bar(
                    x=sub["run"],
                    y=sub[field],
                    name=PATH_LABELS.get(path, path),
                    legendgroup=path,
                    showlegend=i == 0,
                    marker_color=PATH_COLORS.get(path),
                    text=text,
                    textposition="outside",
                    cliponaxis=False,
                    hovertemplate="%{x}<br>%{y:.2f}<extra>" + PATH_LABELS.get(path, path) + "</extra>",
                ),
                row=i // 2 + 1,
                col=i % 2 + 1,
            )
    fig.update_layout(
        title=title,
        barmode="group",
        template=TEMPLATE,
        height=640,
        legend=dict(orientation="h", yanchor="top", y=-0.12),
    )
    return fig


def fit_time_bars(table: pd.DataFrame, title: str = "Fit (training) time") -> go.Figure:
    """Seconds to fit each run's model (PatchCore: feature extraction + coreset; EfficientAD: training steps)."""
    if table is None or table.empty or table["fit_s"].dropna().empty:
        return _empty(title, "No fit times recorded for these runs.")
    t = table.dropna(subset=["fit_s"])
    colors = _colors(t["series"])
    fig = go.Figure()
    for series, sub in t.groupby("series", sort=False):
        fig.add_trace(
            go.Bar(
                x=sub["category"] + " · " + sub["run_id"],
                y=sub["fit_s"],
                name=series,
                marker_color=colors[series],
                text=[f"{v:.1f} s" for v in sub["fit_s"]],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"<b>{series}</b><br>%{{x}}: %{{y:.1f}} s<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        yaxis_title="seconds",
        template=TEMPLATE,
        height=380,
        barmode="group",
        legend=dict(orientation="h", yanchor="top", y=-0.25),
    )
    return fig


# --------------------------------------------------------------------------- curves and scores


def roc_pr_curves(curves: Mapping[str, dict], title: str = "ROC and precision-recall (image level)") -> go.Figure:
    """ROC and PR curves of several runs overlaid; ``curves`` maps a legend name to a curves.json dict.

    A run whose curve is undefined (one class only) is skipped in that panel.
    """
    usable = {name: c for name, c in (curves or {}).items() if c and (c.get("roc") or c.get("pr"))}
    if not usable:
        return _empty(title, "No ROC/PR curves stored for these runs.")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["ROC", "Precision-recall"], horizontal_spacing=0.1)
    colors = _colors(usable)
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line=dict(dash="dot", color="#bbbbbb"),
            name="chance",
            hoverinfo="skip",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    for name, c in usable.items():
        shown = False
        if c.get("roc"):
            roc = c["roc"]
            fig.add_trace(
                go.Scatter(
                    x=roc["fpr"],
                    y=roc["tpr"],
                    customdata=roc["thresholds"],
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    line=dict(color=colors[name], shape="hv"),
                    hovertemplate="FPR %{x:.3f}, TPR %{y:.3f}<br>threshold %{customdata:.4g}<extra>"
                    + name
                    + "</extra>",
                ),
                row=1,
                col=1,
            )
            shown = True
        if c.get("pr"):
            pr = c["pr"]
            fig.add_trace(
                go.Scatter(
                    x=pr["recall"],
                    y=pr["precision"],
                    customdata=pr["thresholds"],
                    mode="lines",
                    name=name,
                    legendgroup=name,
                    showlegend=not shown,
                    line=dict(color=colors[name], shape="hv"),
                    hovertemplate="recall %{x:.3f}, precision %{y:.3f}<br>threshold %{customdata:.4g}<extra>"
                    + name
                    + "</extra>",
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title_text="false-positive rate", range=[-0.02, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="true-positive rate", range=[-0.02, 1.05], row=1, col=1)
    fig.update_xaxes(title_text="recall", range=[-0.02, 1.02], row=1, col=2)
    fig.update_yaxes(title_text="precision", range=[-0.02, 1.05], row=1, col=2)
    fig.update_layout(
        title=title,
        template=TEMPLATE,
        height=460,
        legend=dict(orientation="h", yanchor="top", y=-0.22),
        margin=dict(b=110),
    )
    return fig


def score_histogram(
    split: Mapping[str, np.ndarray],
    threshold: float | None = None,
    title: str = "Image scores",
    threshold_label: str = "threshold",
) -> go.Figure:
    """Overlaid histograms of normal vs anomalous test-image scores, the threshold as a vertical line.

    ``split`` is ``comparison.score_split(records)``. Both histograms share one bin grid so bars line up.
    """
    normal = np.asarray(split.get("normal", []), dtype=float)
    anomalous = np.asarray(split.get("anomalous", []), dtype=float)
    every = np.concatenate([normal, anomalous])
    if every.size == 0:
        return _empty(title, "No test scores stored for this run.")
    lo, hi = float(every.min()), float(every.max())
    size = (hi - lo) / max(10, min(40, every.size // 2)) if hi > lo else 1.0
    bins = dict(start=lo - size / 2, end=hi + size, size=size)
    fig = go.Figure()
    for name, values, color in (("normal", normal, NORMAL_COLOR), ("anomalous", anomalous, ANOMALOUS_COLOR)):
        if values.size:
            fig.add_trace(
                go.Histogram(
                    x=values,
                    xbins=bins,
                    name=f"{name} ({values.size})",
                    marker_color=color,
                    opacity=0.6,
                    hovertemplate="score %{x}<br>%{y} images<extra>" + name + "</extra>",
                )
            )
    if threshold is not None and math.isfinite(threshold):
        fig.add_vline(
            x=threshold,
            line=dict(color=THRESHOLD_COLOR, dash="dash", width=2),
            annotation_text=f"{threshold_label} {threshold:.4g}",
            annotation_position="top",
        )
    fig.update_layout(
        title=title,
        barmode="overlay",
        template=TEMPLATE,
        height=340,
        xaxis_title="anomaly score",
        yaxis_title="test images",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
    )
    return fig


def per_defect_bars(per_defect: pd.DataFrame, title: str = "Detection rate per defect type") -> go.Figure:
    """Share of each defect type's images flagged, per run (at the threshold the table was computed for)."""
    if per_defect is None or per_defect.empty:
        return _empty(title, "No anomalous test images, so no per-defect rates.")
    df = per_defect.dropna(subset=["recall"])
    if df.empty:
        return _empty(title, "No threshold, so no per-defect rates.")
    several_categories = df["category"].nunique() > 1 if "category" in df else False
    x = (df["category"] + " / " + df["defect_type"]) if several_categories else df["defect_type"]
    df = df.assign(x=x)
    colors = _colors(df["series"])
    fig = go.Figure()
    for series, sub in df.groupby("series", sort=False):
        fig.add_trace(
            go.Bar(
                x=sub["x"],
                y=sub["recall"],
                name=series,
                marker_color=colors[series],
                text=[f"{int(d)}/{int(n)}" for d, n in zip(sub["detected"], sub["n"], strict=False)],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"<b>{series}</b><br>%{{x}}: %{{y:.0%}} detected<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        barmode="group",
        template=TEMPLATE,
        height=380,
        yaxis=dict(range=[0, 1.15], tickformat=".0%", title="detected"),
        legend=dict(orientation="h", yanchor="top", y=-0.2),
    )
    return fig
