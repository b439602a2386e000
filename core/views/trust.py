"""View-models of the two trust checks: the training-set audit gallery and the detection-limit charts and tables.

Used by the Training page (audit), the Compare page (detection limit) and the HTML report; built from the stored
results only (``core.engine.audit.load_audit``, ``RunArtifacts.limit()``), so showing them never runs a model.

    from core.views import trust
    from core.engine.limit import load_limit
    fig = trust.limit_figure(load_limit(run_dir), "zero_escape")
    cards = trust.audit_cards(spec, n=12)      # ranked gallery: heatmap overlays, names, scores
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.data import images
from core.data.datasets import DatasetSpec
from core.engine.audit import AuditResult, audit_maps, load_audit
from core.engine.limit import CATCH_RATE, POINT_LABELS, POINTS, LimitResult, load_limit
from core.errors import ImageError
from core.store.runs import Run, RunRegistry
from core.views.overlays import fit_display, overlay, resize_map

GALLERY_SIDE = 256  # thumbnails: enough to see a defect, small enough for 20 on a page


# ---------------------------------------------------------------------------------------------- detection limit


def run_limit(run: Run, registry: RunRegistry | None = None) -> LimitResult | None:
    return load_limit((registry or RunRegistry()).run_dir(run.id))


def limit_curves(result: LimitResult, point: str) -> pd.DataFrame:
    """Long table: one row per (shape, contrast, area) with the recall at ``point``."""
    rows = [
        {
            "shape": c["shape"],
            "contrast": f"{c['contrast']:.2f}",
            "area_pct": 100 * c["area_fraction"],
            "area_px": c["area_px"],
            "recall": c.get(f"recall_{point}"),
        }
        for c in result.cells
    ]
    return pd.DataFrame(rows, columns=["shape", "contrast", "area_pct", "area_px", "recall"])


def limit_figure(result: LimitResult, point: str = "zero_escape", title: str | None = None) -> go.Figure:
    """Recall against defect area (log scale), one panel per shape, one curve per contrast; the 95 % line."""
    df = limit_curves(result, point)
    threshold = result.thresholds.get(point)
    title = title or (
        f"Detection limit of {result.model} ({result.run_id}) {POINT_LABELS[point]}"
        + ("" if threshold is not None else " — no such threshold")
    )
    if df.empty or df["recall"].isna().all():
        fig = go.Figure()
        fig.update_layout(title=title, height=320)
        return fig
    fig = px.line(
        df,
        x="area_pct",
        y="recall",
        color="contrast",
        facet_col="shape",
        markers=True,
        log_x=True,
        hover_data={"area_px": True},
        labels={"area_pct": "defect area (% of image)", "recall": "recall", "contrast": "contrast"},
        title=title,
        height=360,
    )
    fig.add_hline(y=CATCH_RATE, line_dash="dot", line_color="grey", annotation_text=f"{CATCH_RATE:.0%}")
    fig.update_yaxes(range=[-0.03, 1.03])
    fig.update_layout(margin=dict(l=10, r=10, t=70, b=10), legend_title_text="contrast")
    return fig


def limit_table(result: LimitResult) -> pd.DataFrame:
    """Smallest area caught 95 % of the time, per shape and contrast, at both thresholds (px and % of image)."""
    rows = []
    for shape in result.shapes:
        for contrast in result.contrasts:
            row = {"shape": shape, "contrast": contrast}
            for point in POINTS:
                hit = result.smallest_for(shape, point, contrast)
                px_ = hit["area_px"] if hit else None
                row[f"{point} px"] = px_
                row[f"{point} %"] = None if px_ is None else round(100 * hit["area_fraction"], 3)
            rows.append(row)
    return pd.DataFrame(rows)


def limit_summary(runs: list[Run], registry: RunRegistry | None = None, point: str = "zero_escape") -> pd.DataFrame:
    """One row per run with a measured limit: AUROC beside the smallest defect caught 95 % per shape (at the
    strongest contrast measured), at ``point`` — the table of the Compare page and benchmarks/limit.py."""
    registry = registry or RunRegistry()
    rows = []
    for run in runs:
        result = run_limit(run, registry)
        if result is None:
            continue
        row = {
            "run": run.id,
            "model": run.model,
            "category": run.category,
            "image AUROC": (run.metrics or {}).get("image_auroc"),
            "contrast": max(result.contrasts),
        }
        for shape in result.shapes:
            hit = result.smallest_for(shape, point)
            row[f"{shape} px"] = hit["area_px"] if hit else None
            row[f"{shape} %"] = None if not hit or hit["area_px"] is None else round(100 * hit["area_fraction"], 3)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- audit


def audit_cards(spec: DatasetSpec, n: int = 20, result: AuditResult | None = None) -> list[dict]:
    """The ``n`` most anomalous training images of the stored audit: {rank, name, path, score, robust_z,
    suspicious, excluded, image (RGB overlay of the anomaly map on one colour scale for all cards)}."""
    result = result or load_audit(spec)
    if result is None:
        return []
    maps = audit_maps(spec)
    top = result.top(n)
    if maps is not None and len(maps) >= len(top) and top:
        shown = maps[: len(top)].astype(np.float32)
        vmin, vmax = float(np.median(maps.astype(np.float32))), float(shown.max())
    cards = []
    for i, entry in enumerate(top):
        try:
            photo = fit_display(images.read_image(entry.path), GALLERY_SIDE)
        except ImageError:
            photo = np.full((GALLERY_SIDE, GALLERY_SIDE, 3), 128, np.uint8)  # moved since the audit
        if maps is not None and i < len(maps):
            photo = overlay(photo, resize_map(shown[i], photo.shape[:2]), 0.45, vmin, vmax)
        cards.append({**entry.__dict__, "image": photo})
    return cards


def audit_table(result: AuditResult, n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "rank": e.rank,
                "image": e.name,
                "score": e.score,
                "robust z": round(e.robust_z, 1),
                "suspicious": e.suspicious,
                "excluded": e.excluded,
            }
            for e in result.top(n)
        ]
    )


# ---------------------------------------------------------------------------------------------- report


def report_section(runs: list[Run], registry: RunRegistry, figure_html, table_html) -> str:
    """HTML for the report: the audit of each dataset the runs trained on (if audited) and each run's detection
    limit (if measured). ``figure_html``/``table_html`` are the report's own renderers (one look)."""
    e = html.escape
    parts: list[str] = []
    seen: set[tuple] = set()
    for run in runs:
        spec = DatasetSpec.from_dict(run.dataset)
        key = (spec.kind, spec.category, spec.root)
        if key in seen:
            continue
        seen.add(key)
        result = load_audit(spec)
        if result is None:
            continue
        parts.append(f"<h3>Training-set audit: {e(spec.kind)}:{e(spec.category)}</h3>")
        parts.append(f"<p>{e(result.statement())}</p>")
        same = [r for r in runs if (r.dataset.get("kind"), r.category, r.dataset.get("root")) == key]
        for run_id, names in ((r.id, r.dataset.get("excluded") or []) for r in same):
            parts.append(
                f'<p class="note">Run {e(run_id)} trained without: {e(", ".join(names)) if names else "nothing"}.</p>'
            )
        parts.append(table_html(audit_table(result, 10)))
    for run in runs:
        result = run_limit(run, registry)
        if result is None:
            continue
        parts.append(f"<h3>Detection limit: {e(run.id)} · {e(run.model)} · {e(run.category)}</h3>")
        point = next((p for p in POINTS if result.thresholds.get(p) is not None), "run")
        parts += [f"<p>{e(line)}</p>" for line in result.statements(point)]
        parts.append(
            f'<p class="note">{len(result.cells) * result.n_per_cell} synthetic defects (seed {result.seed}) on '
            f"{result.n_normal_images} held-out normal test images; thresholds: run "
            f"{result.thresholds.get('run')}, zero escapes {result.thresholds.get('zero_escape')}.</p>"
        )
        parts.append(figure_html(limit_figure(result, point)))
        parts.append(table_html(limit_table(result)))
    if not parts:
        return ""
    return "<h2>Trust checks</h2>\n" + "\n".join(parts)
