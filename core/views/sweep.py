"""A sweep's runs as a table and two charts: each metric against each swept parameter, and quality against cost
with the Pareto-optimal points marked and a one-line recommendation (Compare page, ``aw sweep show``).

A point is Pareto-optimal when no other finished point is at least as good on quality and at least as cheap, and
strictly better on one. The recommendation is the cheapest point whose quality is within ``TOLERANCE`` of the best:
what an engineer would pick when the last thousandth of AUROC is not worth doubling the fit.

Example::

    frame = sweep_frame(runs)                       # one row per run: swept values, metrics, fit s, ms per image
    front = pareto(frame, "image_auroc", "fit_s")   # boolean mask, True on the front
    print(recommend(frame, "image_auroc", "fit_s"))
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Quality within this of the best counts as "as good" for the recommendation (AUROC is noisy at this scale).
TOLERANCE = 0.005
QUALITY = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "aupro": "AUPRO",
    "recall_at_zero_escapes": "1 − FPR at 100 % recall",
}
COST = {"fit_s": "fit s", "e2e_ms_p50": "ms per image (p50)", "peak_rss_fit_mb": "peak RSS MB (fit)"}


def sweep_frame(runs: list) -> pd.DataFrame:
    """One row per run of a sweep: its swept parameter values, status, quality metrics and costs."""
    rows = []
    for run in runs:
        swept = (run.extra.get("sweep") or {}).get("swept", [])
        m, t, lat = run.metrics or {}, run.timings or {}, run.latency or {}
        fpr = m.get("fpr_at_full_recall")
        rows.append(
            {
                "run": run.id,
                "status": run.status,
                **{name: run.params.get(name) for name in swept},
                "image_auroc": m.get("image_auroc"),
                "pixel_auroc": m.get("pixel_auroc"),
                "aupro": m.get("aupro"),
                "fpr_at_full_recall": fpr,
                "recall_at_zero_escapes": None if fpr is None else 1.0 - float(fpr),
                "fit_s": t.get("fit_s"),
                "e2e_ms_p50": lat.get("e2e_ms_p50"),
                "peak_rss_fit_mb": t.get("peak_rss_fit_mb"),
            }
        )
    return pd.DataFrame(rows)


def swept_parameters(runs: list) -> list[str]:
    return list((runs[0].extra.get("sweep") or {}).get("swept", [])) if runs else []


def pareto(frame: pd.DataFrame, quality: str, cost: str) -> pd.Series:
    """True for the finished points no other point beats on both ``quality`` (higher) and ``cost`` (lower)."""
    q = pd.to_numeric(frame[quality], errors="coerce").to_numpy(dtype=float)
    c = pd.to_numeric(frame[cost], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(q) & np.isfinite(c)
    front = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok & ((q >= q[i]) & (c <= c[i])) & ((q > q[i]) | (c < c[i]))
        front[i] = not others.any()
    return pd.Series(front, index=frame.index)


def marked(frame: pd.DataFrame, quality: str, cost: str) -> pd.DataFrame:
    """The sweep's table with a ``pareto_optimal`` column ("yes" on the front): the page's and ``aw sweep show``'s."""
    out = frame.assign(pareto_optimal=["yes" if f else "" for f in pareto(frame, quality, cost)])
    return out.astype(object).where(out.notna(), None)  # a point not finished yet shows "–", not "nan"


def recommend(frame: pd.DataFrame, quality: str, cost: str, swept: list[str] | None = None) -> str:
    """One line: the cheapest point within TOLERANCE of the best quality, and what the best would cost more."""
    q = pd.to_numeric(frame[quality], errors="coerce")
    c = pd.to_numeric(frame[cost], errors="coerce")
    ok = q.notna() & c.notna()
    if not ok.any():
        return "No finished point yet: the recommendation follows once runs are done."
    best = q[ok].max()
    near = frame[ok & (q >= best - TOLERANCE)]
    pick = near.loc[c[near.index].idxmin()]
    top = frame.loc[q[ok].idxmax()]
    swept = swept or [col for col in frame.columns if col not in _NON_PARAMS]
    what = ", ".join(f"{s}={pick[s]}" for s in swept) or pick["run"]
    line = (
        f"Recommended: {what} — {QUALITY.get(quality, quality)} {pick[quality]:.3f} at "
        f"{pick[cost]:,.1f} {COST.get(cost, cost)}"
    )
    if top["run"] != pick["run"] and top[quality] > pick[quality]:
        gain = top[quality] - pick[quality]
        factor = top[cost] / pick[cost] if pick[cost] else float("inf")
        top_what = ", ".join(f"{s}={top[s]}" for s in swept)
        line += f"; the best ({top_what}) adds {gain:.3f} for {factor:.1f}× the cost."
    else:
        line += "; it is also the best."
    return line


_NON_PARAMS = {"run", "status", *QUALITY, *COST, "fpr_at_full_recall", "pareto_optimal"}


def metric_charts(frame: pd.DataFrame, swept: list[str]) -> list:
    """One Plotly figure per swept parameter: each quality metric against the parameter's values (finished runs;
    the other swept parameters as colour)."""
    import plotly.graph_objects as go  # plotly: only when a sweep's charts are drawn, not at page start-up

    done = frame[frame["status"] == "done"]
    figures = []
    for param in swept:
        fig = go.Figure()
        others = [s for s in swept if s != param]
        groups = done.groupby([str(o) for o in others], dropna=False) if others else [("", done)]
        for key, part in groups:
            part = part.sort_values(param)
            suffix = (
                ""
                if not others
                else " · "
                + ", ".join(f"{o}={v}" for o, v in zip(others, key if isinstance(key, tuple) else (key,), strict=False))
            )
            for metric, label in QUALITY.items():
                if part[metric].notna().any():
                    fig.add_trace(
                        go.Scatter(x=part[param].astype(str), y=part[metric], mode="lines+markers", name=label + suffix)
                    )
        fig.update_layout(title=f"Quality against {param}", xaxis_title=param, yaxis_title="metric", height=380)
        figures.append(fig)
    return figures


def tradeoff_chart(frame: pd.DataFrame, quality: str, cost: str, swept: list[str]):
    """Quality against cost, one marker per finished point, the Pareto front drawn and marked."""
    import plotly.graph_objects as go  # plotly: only when a sweep's charts are drawn, not at page start-up

    done = frame[(frame["status"] == "done") & frame[quality].notna() & frame[cost].notna()].copy()
    front = pareto(done, quality, cost) if len(done) else pd.Series(dtype=bool)
    labels = [", ".join(f"{s}={row[s]}" for s in swept) for _, row in done.iterrows()]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=done[cost],
            y=done[quality],
            mode="markers+text",
            text=labels,
            textposition="top center",
            marker={"size": 11, "symbol": ["star" if f else "circle" for f in front]},
            name="points (stars: Pareto-optimal)",
        )
    )
    if front.any():
        edge = done[front].sort_values(cost)
        fig.add_trace(go.Scatter(x=edge[cost], y=edge[quality], mode="lines", name="Pareto front"))
    fig.update_layout(
        title=f"{QUALITY.get(quality, quality)} against {COST.get(cost, cost)}",
        xaxis_title=COST.get(cost, cost),
        yaxis_title=QUALITY.get(quality, quality),
        height=420,
    )
    return fig
