"""A self-contained HTML comparison report: one file that opens offline, mails well and archives well.

Contents: the metric table (measured, averages, published references labelled as such), the comparison
charts (Plotly, with plotly.js inlined once in <head> so no CDN is needed), each run's parameters,
environment and warnings, and a few heatmaps per run as base64 PNGs. Built from stored artifacts only,
so the page and the CLI (``build_html_report(runs)``) produce the same file without running a model.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd
from plotly.offline import get_plotlyjs

from core.data.images import read_image, to_png_bytes
from core.errors import WorkbenchError
from core.store.artifacts import RunArtifacts, read_json
from core.store.runs import Run, RunRegistry
from core.views import charts, comparison, trust
from core.views.overlays import overlay  # the heatmap viewer's colours, so a report looks like the app

HEATMAP_MAX_SIDE = 320  # keeps a report with many runs to a few MB


# --------------------------------------------------------------------------- heatmap pictures


def _shrink(image: np.ndarray, max_side: int = HEATMAP_MAX_SIDE) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def heatmap_png(
    image_rgb: np.ndarray | None,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> bytes:
    """PNG of [test image | anomaly-map overlay with the ground-truth outline in green]."""
    if image_rgb is None:  # the test image was moved: show the map alone on a grey canvas
        image_rgb = np.full((*np.asarray(anomaly_map).shape[-2:], 3), 128, dtype=np.uint8)
    photo = _shrink(np.ascontiguousarray(image_rgb))
    over = np.ascontiguousarray(overlay(photo, anomaly_map, 0.5, vmin, vmax))
    if mask is not None and np.asarray(mask).any():
        m = cv2.resize(
            np.asarray(mask, dtype=np.uint8), (photo.shape[1], photo.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(over, contours, -1, (0, 255, 0), 1)
    gap = np.full((photo.shape[0], 6, 3), 255, dtype=np.uint8)
    return to_png_bytes(np.concatenate([photo, gap, over], axis=1))


def pick_heatmaps(records: pd.DataFrame, n: int = 3) -> list[tuple[int, str]]:
    """Which test images to show, with why: the most anomalous defect, the least anomalous defect (the
    nearest escape) and the most anomalous normal image (the nearest false alarm)."""
    picks: list[tuple[int, str]] = []
    anomalous = records[records["label"] == 1].sort_values("score")
    normal = records[records["label"] == 0].sort_values("score")
    if not anomalous.empty:
        picks.append((int(anomalous.index[-1]), "highest-scoring defect"))
    if not normal.empty:
        picks.append((int(normal.index[-1]), "highest-scoring normal image (nearest false alarm)"))
    if len(anomalous) > 1:
        picks.append((int(anomalous.index[0]), "lowest-scoring defect (nearest escape)"))
    for idx in anomalous.index[::-1][1:]:  # fill up with further defects, most anomalous first
        if len(picks) >= n:
            break
        if all(int(idx) != p for p, _ in picks):
            picks.append((int(idx), "defect"))
    return picks[:n]


def _run_heatmaps(art: RunArtifacts, n: int) -> list[dict]:
    records = art.records
    vmin = vmax = None
    map_range = (read_json(art.model_json, {}) or {}).get("map_range")
    if map_range and len(map_range) == 2:
        vmin, vmax = map_range  # the run's fixed colour scale, as in the heatmap viewer
    maps, masks = art.maps, art.masks
    out = []
    for pos, why in pick_heatmaps(records, n):
        row = records.loc[pos]
        try:
            image = read_image(row["path"])
        except (WorkbenchError, OSError):
            image = None
        png = heatmap_png(image, maps[pos].astype(np.float32), masks[pos] if masks is not None else None, vmin, vmax)
        out.append(
            {
                "png": base64.b64encode(png).decode("ascii"),
                "why": why,
                "defect_type": row["defect_type"],
                "score": float(row["score"]),
                "file": "/".join(str(row["path"]).split("/")[-2:]),
                "image_missing": image is None,
            }
        )
    return out


# --------------------------------------------------------------------------- HTML pieces

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 16px}
h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px;margin:8px 0}
.note{color:#666;font-size:13px}.published{font-style:italic;color:#555}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;padding:6px;font-size:12px;max-width:660px}
.card img{display:block;max-width:100%}code{background:#f4f4f4;padding:1px 4px}
"""

_TABLE_COLUMNS = {
    "run_id": "run",
    "series": "model setup",
    "category": "category",
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "image_f1": "image F1",
    "pixel_f1": "pixel F1",
    "aupro": "AUPRO",
    "fpr_at_full_recall": "overkill at 0 escapes",
    "fit_s": "fit s",
    "e2e_ms_p50": "e2e ms p50",
    "e2e_ms_p95": "e2e ms p95",
    "images_per_s_b1": "img/s b1",
    "images_per_s_best": "img/s best",
}


def _table(df: pd.DataFrame, columns: dict[str, str] | None = None) -> str:
    if df is None or df.empty:
        return '<p class="note">Nothing to show.</p>'
    if columns:
        df = df[[c for c in columns if c in df.columns]].rename(columns=columns)
    df = df.astype(object).where(df.notna(), None).map(lambda v: "–" if v is None else v)  # None and NaN alike
    return df.to_html(index=False, escape=True, na_rep="–", float_format=lambda v: f"{v:.3f}", border=0)


def _figure(fig) -> str:
    # plotly.js is inlined once in <head>; each figure only carries its data.
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def _kv(data: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in data.items())
    return f"<table>{rows}</table>" if rows else '<p class="note">none</p>'


def _run_section(run: Run, art: RunArtifacts, heatmaps_per_run: int) -> str:
    e = html.escape
    parts = [f'<h3 id="run-{e(run.id)}">{e(run.id)} · {e(comparison.config_label(run))} · {e(run.category)}</h3>']
    for warning in comparison.run_warnings(run):
        parts.append(f'<div class="warn"><b>Caution:</b> {e(warning)}</div>')
    env = run.environment or {}
    parts.append('<div class="cards"><div class="card"><b>Parameters</b>' + _kv(run.params) + "</div>")
    parts.append('<div class="card"><b>Dataset and seed</b>' + _kv({**run.dataset, "seed": run.seed}) + "</div>")
    timings = {k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in (run.timings or {}).items()}
    parts.append('<div class="card"><b>Timings</b>' + _kv(timings) + "</div>")
    parts.append(
        '<div class="card"><b>Environment</b>'
        + _kv(
            {
                k: env.get(k)
                for k in ("cpu", "cpu_count", "torch_threads", "gpu", "torch", "anomalib", "python")
                if k in env
            }
        )
        + "</div>"
    )
    parts.append("</div>")
    if heatmaps_per_run > 0 and art.has_records:
        try:
            cards = _run_heatmaps(art, heatmaps_per_run)
        except WorkbenchError as exc:
            cards = []
            parts.append(f'<p class="note">Heatmaps unavailable: {e(str(exc))}</p>')
        if cards:
            parts.append(
                "<p><b>Heatmaps</b> <span class='note'>(left: test image; right: anomaly map on the run's "
                "fixed colour scale, ground-truth defect outlined in green)</span></p><div class='cards'>"
            )
            for c in cards:
                missing = " · test image not found, map only" if c["image_missing"] else ""
                parts.append(
                    f'<div class="card"><img alt="heatmap {e(c["file"])}" src="data:image/png;base64,{c["png"]}">'
                    f"{e(c['why'])}: <code>{e(c['file'])}</code> ({e(str(c['defect_type']))}), "
                    f"score {c['score']:.4g}{e(missing)}</div>"
                )
            parts.append("</div>")
    return "\n".join(parts)


def build_html_report(
    runs: Sequence[Run],
    registry: RunRegistry | None = None,
    heatmaps_per_run: int = 3,
    title: str = "Anomaly Workbench — model comparison",
    include_references: bool = True,
) -> str:
    """The whole report as one HTML string (UTF-8, no external resources)."""
    if not runs:
        raise WorkbenchError("No runs to report on: pick at least one finished run.")
    registry = registry or RunRegistry()
    arts = {run.id: RunArtifacts(registry.run_dir(run.id)) for run in runs}
    e = html.escape

    table = comparison.comparison_table(runs)
    averages = comparison.averages_table(runs)
    labels = comparison.model_labels(runs)
    refs = comparison.reference_table(set(table["category"]), labels) if include_references else None
    several = table["category"].nunique() > 1
    long = comparison.metrics_long(table, averages if several else None, refs)

    body = _header(runs, title, refs)
    body += _metrics_section(table, averages, comparison.reference_table(models=labels), include_references)
    body.append("<h2>Charts</h2>")
    body += [_figure(f) for f in _figures(runs, arts, table, long)]
    # The training-set audit and detection limit, where they were measured (core.views.trust).
    trust_html = trust.report_section(list(runs), registry, _figure, _table)
    if trust_html:
        body.append(trust_html)
    body.append("<h2>Runs</h2>")
    body += [_run_section(run, arts[run.id], heatmaps_per_run) for run in runs]

    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>{CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _header(runs: Sequence[Run], title: str, refs) -> list[str]:
    """Title, generation time, links to each run, and the cautions a reader must see first."""
    e = html.escape
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    body = [
        f"<h1>{e(title)}</h1>",
        f'<p class="note">Generated {e(generated)} · {len(runs)} run(s): '
        + ", ".join(f'<a href="#run-{e(r.id)}">{e(r.id)}</a>' for r in runs)
        + "</p>",
    ]
    for run in runs:
        for w in comparison.run_warnings(run):
            body.append(f'<div class="warn"><b>Caution, {e(run.id)}:</b> {e(w)}</div>')
    note = comparison.backbone_note(runs, refs)
    if note:
        body.append(f'<div class="warn"><b>Backbones:</b> {e(note)}</div>')
    return body


def _metrics_section(table, averages, all_refs, include_references: bool) -> list[str]:
    """The metrics table, its average across categories and (optionally) the published reference numbers."""
    e = html.escape
    body = [
        "<h2>Metrics</h2>",
        '<p class="note">Image F1 is at anomalib\'s adaptive threshold, chosen on the test set itself '
        "(optimistic). Overkill at 0 escapes = share of normal images flagged when the threshold is lowered "
        "until no defect is missed.</p>",
        _table(table, _TABLE_COLUMNS),
        "<h3>Average across categories</h3>",
        _table(
            averages,
            {
                "series": "model setup",
                "n_categories": "categories (n)",
                "categories": "categories",
                **{k: v for k, v in comparison.METRICS.items()},
            },
        ),
    ]
    if include_references:
        body += [
            f'<h3 class="published">Reference numbers — {e(comparison.PUBLISHED)}</h3>',
            '<p class="note">From the literature for orientation only; different data splits, image sizes and '
            "code versions make them indicative, not a target.</p>",
            _table(
                all_refs,
                {
                    "model": "model",
                    "config": "setup",
                    "backbone": "backbone",
                    "category": "category",
                    "source": "status",
                    **comparison.METRICS,
                    "reference": "source",
                },
            ),
        ]
    return body


def _figures(runs: Sequence[Run], arts: dict, table, long) -> list:
    """Metric bars, ROC/PR curves, a score histogram per run, per-defect detection, latency and fit time."""
    curves, histograms = {}, []
    for run in runs:
        art = arts[run.id]
        name = f"{comparison.config_label(run)} · {run.category} · {run.id}"
        curves[name] = art.curves()
        if art.records_path.is_file():
            threshold = (run.metrics or {}).get("image_threshold")
            histograms.append(
                charts.score_histogram(
                    comparison.score_split(art.records),
                    threshold,
                    title=f"Scores: {name}",
                    threshold_label="adaptive threshold",
                )
            )
    return [
        charts.metric_bars(long),
        charts.roc_pr_curves(curves),
        *histograms,
        charts.per_defect_bars(
            comparison.per_defect_table(runs),
            title="Detection rate per defect type (each run at its adaptive threshold)",
        ),
        charts.latency_bars(comparison.latency_table(runs)),
        charts.fit_time_bars(table),
    ]
