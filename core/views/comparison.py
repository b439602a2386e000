"""Comparing finished runs: one table of measured numbers, averages, published reference numbers, latency
paths and the threshold what-if for one run — all plain data (DataFrames / dicts) for the page, the
HTML report and the CLI alike.

Everything is read from what a run stored (registry row, records.json, curves.json); nothing here runs a
model. Threshold views are pure counting over the stored per-image scores (``core.engine.evaluation``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.engine import evaluation
from core.models import get_entry, model_warnings
from core.store.runs import Run
from core.views.csv_export import to_csv_bytes

# metric key → column label, in the order charts and tables show them
METRICS: dict[str, str] = {
    "image_auroc": "Image AUROC",
    "pixel_auroc": "Pixel AUROC",
    "image_f1": "Image F1",
    "pixel_f1": "Pixel F1",
    "aupro": "AUPRO",
}
AVERAGE = "average"  # the category label of across-category means
MEASURED = "measured here"
PUBLISHED = "published, not measured here"

# Known latency paths, in display order; unknown ones follow alphabetically.
PATH_LABELS: dict[str, str] = {
    "stock": "stock anomalib (Engine.predict)",
    "stock_seed_env": "stock anomalib, untuned process",  # benchmarks/speed.py: OpenMP spinning, training malloc
    "torch": "workbench torch",
    "ours": "workbench torch",
    "openvino_fp32": "OpenVINO FP32",
    "openvino_fp16": "OpenVINO FP16",
    "openvino": "OpenVINO",
}
LATENCY_FIELDS = (
    "e2e_ms_p50",
    "e2e_ms_p95",
    "model_ms_p50",
    "model_ms_p95",
    "images_per_s_b1",
    "images_per_s_best",
    "best_batch_size",
)


# --------------------------------------------------------------------------- published reference numbers


@dataclass(frozen=True)
class Reference:
    """One published result. Only numbers checked against their source belong here."""

    model: str  # the registry label ('PatchCore')
    setup: str
    category: str
    metrics: dict
    source: str
    backbone: str = ""  # weights.BACKBONES name the number was obtained with ('' if not a CNN backbone)


def _readme(model_dir: str, note: str = "") -> str:
    return (
        f"anomalib {model_dir} README benchmark tables{note}, as shipped in anomalib 2.7: "
        f"src/anomalib/models/image/{model_dir}/README.md"
    )


_PATCHCORE_PAPER = "Roth et al., 'Towards Total Recall in Industrial Anomaly Detection', CVPR 2022"
_WRN, _R18 = "wide_resnet50_2", "resnet18"


def _readme_refs(model: str, model_dir: str, backbone: str, setup: str, per_category: dict, note: str = ""):
    return tuple(
        Reference(model, setup, category, metrics, _readme(model_dir, note), backbone)
        for category, metrics in per_category.items()
    )


# Copied from the README tables in the installed anomalib package (re-checkable offline: grep the file named in
# each source). image AUROC / pixel AUROC / image F1 (/ pixel F1, AUPRO where a table gives them).
REFERENCES: tuple[Reference, ...] = (
    Reference(
        "PatchCore",
        "WRN-50, 10 % coreset (paper)",
        "grid",
        {"image_auroc": 0.979, "pixel_auroc": 0.987},
        _PATCHCORE_PAPER,
        _WRN,
    ),
    *_readme_refs(
        "PatchCore",
        "patchcore",
        _WRN,
        "WRN-50 (anomalib README)",
        {
            "grid": {"image_auroc": 0.959, "pixel_auroc": 0.968, "image_f1": 0.974},
            "tile": {"image_auroc": 1.000, "pixel_auroc": 0.961, "image_f1": 1.000},
            "leather": {"image_auroc": 1.000, "pixel_auroc": 0.991, "image_f1": 1.000},
        },
        " (seed 42)",
    ),
    *_readme_refs(
        "PaDiM",
        "padim",
        _R18,
        "ResNet-18 (anomalib README)",
        {
            "grid": {"image_auroc": 0.857, "pixel_auroc": 0.918, "image_f1": 0.893},
            "tile": {"image_auroc": 0.950, "pixel_auroc": 0.934, "image_f1": 0.934},
            "leather": {"image_auroc": 0.982, "pixel_auroc": 0.994, "image_f1": 0.984},
        },
    ),
    *_readme_refs(
        "DFM",
        "dfm",
        _R18,
        "ResNet-18 (anomalib README)",
        {
            "grid": {"image_auroc": 0.736, "image_f1": 0.871},
            "tile": {"image_auroc": 0.966, "image_f1": 0.958},
            "leather": {"image_auroc": 0.993, "image_f1": 0.978},
        },
    ),
    *_readme_refs(
        "STFPM",
        "stfpm",
        _R18,
        "ResNet-18 (anomalib README)",
        {
            "grid": {"image_auroc": 0.982, "pixel_auroc": 0.988, "image_f1": 0.982},
            "tile": {"image_auroc": 0.949, "pixel_auroc": 0.946, "image_f1": 0.930},
            "leather": {"image_auroc": 0.989, "pixel_auroc": 0.991, "image_f1": 0.989},
        },
    ),
    *_readme_refs(
        "FastFlow",
        "fastflow",
        _R18,
        "ResNet-18 (anomalib README)",
        {
            "grid": {"image_auroc": 0.988, "pixel_auroc": 0.985, "image_f1": 0.941, "pixel_f1": 0.412},
            "tile": {"image_auroc": 0.967, "pixel_auroc": 0.944, "image_f1": 0.947},
            "leather": {"image_auroc": 1.000, "pixel_auroc": 0.996, "image_f1": 0.995},
        },
        " (early stopping, patience 3)",
    ),
    *_readme_refs(
        "FRE",
        "fre",
        "resnet50",
        "ResNet-50 (anomalib README)",
        {
            "grid": {"image_auroc": 0.817, "image_f1": 0.887},
            "tile": {"image_auroc": 0.991, "image_f1": 0.982},
            "leather": {"image_auroc": 1.000, "image_f1": 0.995},
        },
    ),
)


def model_labels(runs: Sequence[Run]) -> set[str]:
    """The registry labels of the runs' models ('PatchCore', 'PaDiM'), to pick their published references."""
    labels = set()
    for run in runs:
        try:
            labels.add(get_entry(run.model).label)
        except Exception:  # a model removed from the registry since
            labels.add(run.model)
    return labels


def backbone_note(runs: Sequence[Run], references: pd.DataFrame | None = None) -> str | None:
    """A sentence when the numbers side by side come from different backbones (a Lite0 run beside a WRN-50
    reference or run), so nobody reads a backbone difference as a model difference; None when they agree."""
    used = {r.params.get("backbone") for r in runs if r.params.get("backbone")}
    ref_backbones = (
        set()
        if references is None or references.empty
        else {b for b in references.get("backbone", pd.Series(dtype=str)) if b}
    )
    if len(used) <= 1 and ref_backbones <= used:
        return None
    parts = [f"runs use {', '.join(sorted(used))}"] if used else []
    if ref_backbones - used:
        parts.append(f"published numbers use {', '.join(sorted(ref_backbones))}")
    return (
        "Different backbones side by side: " + "; ".join(parts) + ". Part of any gap is the backbone, not the "
        "model (offline, models run on the EfficientNet-Lite0 weights that ship with the product; anomalib's "
        "defaults are larger ResNets)."
    )


def reference_table(categories: Iterable[str] | None = None, models: Iterable[str] | None = None) -> pd.DataFrame:
    """Published numbers as rows shaped like ``comparison_table`` rows, ``source`` = PUBLISHED.

    ``categories`` and ``models`` (registry labels, e.g. from ``model_labels``) limit the rows (None: all).
    """
    wanted = None if categories is None else set(categories)
    wanted_models = None if models is None else set(models)
    rows = []
    for ref in REFERENCES:
        if wanted is not None and ref.category not in wanted:
            continue
        if wanted_models is not None and ref.model not in wanted_models:
            continue
        rows.append(
            {
                "series": f"{ref.model} {ref.setup} — {PUBLISHED}",
                "model": ref.model,
                "config": ref.setup,
                "category": ref.category,
                "source": PUBLISHED,
                **{key: ref.metrics.get(key) for key in METRICS},
                "backbone": ref.backbone,
                "reference": ref.source,
            }
        )
    table = pd.DataFrame(
        rows, columns=["series", "model", "config", "category", "source", *METRICS, "backbone", "reference"]
    )
    return table.astype({key: float for key in METRICS})  # a number not published is NaN, shown blank


# --------------------------------------------------------------------------- run labels and selection


def config_label(run: Run) -> str:
    """What distinguishes a model setup in a legend, e.g. 'PatchCore · wide_resnet50_2'.

    Pipeline-check setups (e.g. EfficientAD with an untrained teacher) say so, so they are never mistaken for results.
    """
    try:
        entry_label = get_entry(run.model).label
    except Exception:  # a model removed from the registry since: still show its stored results
        entry_label = run.model
    detail = run.params.get("backbone") or run.params.get("model_size") or ""
    label = f"{entry_label} · {detail}" if detail else entry_label
    if run.params.get("teacher") == "untrained":
        label += " · untrained teacher"
    elif run.params.get("backbone_weights") == "random":  # runs from before PatchCore had bundled weights
        label += " · random weights"
    elif run_warnings(run):
        label += " · pipeline check"
    return label


def run_warnings(run: Run) -> list[str]:
    try:
        return model_warnings(run.model, run.params)
    except Exception:  # unknown model or parameters from an older version: nothing to warn about
        return []


def default_selection(runs: Sequence[Run]) -> list[str]:
    """The latest finished run per (model, category): what an engineer usually wants to compare.

    Pipeline checks (e.g. an untrained-teacher EfficientAD) are left out when any real result exists, so a
    demo opens on numbers that mean something; with nothing else they are shown (and labelled as such)."""
    real = [r for r in runs if not run_warnings(r)]
    latest: dict[tuple[str, str], Run] = {}
    for run in real or runs:
        key = (run.model, run.category)
        if key not in latest or run.created_at > latest[key].created_at:
            latest[key] = run
    return [r.id for r in sorted(latest.values(), key=lambda r: (r.category, r.model))]


def _series(runs: Sequence[Run]) -> dict[str, str]:
    """Legend name per run: the setup label, plus the run id where one setup has several runs in a category."""
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        key = (config_label(run), run.category)
        counts[key] = counts.get(key, 0) + 1
    return {
        run.id: config_label(run) + (f" · {run.id}" if counts[(config_label(run), run.category)] > 1 else "")
        for run in runs
    }


# --------------------------------------------------------------------------- the comparison table


def _num(value) -> float | None:
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def comparison_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: who it is, the five quality metrics, overkill at zero escapes, fit time and latency."""
    series = _series(runs)
    rows = []
    for run in runs:
        m, lat, t = run.metrics or {}, run.latency or {}, run.timings or {}
        rows.append(
            {
                "run_id": run.id,
                "series": series[run.id],
                "model": run.model,
                "config": config_label(run),
                "category": run.category,
                "dataset": run.dataset.get("kind", ""),
                "source": MEASURED,
                **{key: _num(m.get(key)) for key in METRICS},
                "image_threshold": _num(m.get("image_threshold")),
                "fpr_at_full_recall": _num(m.get("fpr_at_full_recall")),
                "n_normal": m.get("n_normal"),
                "n_anomalous": m.get("n_anomalous"),
                "fit_s": _num(t.get("fit_s")),
                "test_s": _num(t.get("test_s")),
                "e2e_ms_p50": _num(lat.get("e2e_ms_p50")),
                "e2e_ms_p95": _num(lat.get("e2e_ms_p95")),
                "images_per_s_b1": _num(lat.get("images_per_s_b1")),
                "images_per_s_best": _num(lat.get("images_per_s_best")),
                "best_batch_size": lat.get("best_batch_size"),
                "peak_rss_fit_mb": _num(t.get("peak_rss_fit_mb")),
                "seed": run.seed,
                "created_at": pd.Timestamp(run.created_at, unit="s"),
                "warnings": " ".join(run_warnings(run)),
            }
        )
    return pd.DataFrame(rows)


def averages_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Per model setup, the mean of each metric across categories (``evaluation.average_metrics``).

    Each category counts once: with several runs of one setup on a category, the latest is used, so a
    category that was run more often does not weigh more.
    """
    groups: dict[str, dict[str, Run]] = {}
    for run in runs:
        per_cat = groups.setdefault(config_label(run), {})
        if run.category not in per_cat or run.created_at > per_cat[run.category].created_at:
            per_cat[run.category] = run
    rows = []
    for label, per_cat in groups.items():
        avg = evaluation.average_metrics([r.metrics or {} for r in per_cat.values()])
        rows.append(
            {
                "series": label,
                "config": label,
                "category": AVERAGE,
                "source": MEASURED,
                "n_categories": avg.get("n_categories", 0),
                "categories": ", ".join(sorted(per_cat)),
                **{key: avg.get(key) for key in METRICS},
            }
        )
    return pd.DataFrame(
        rows, columns=["series", "config", "category", "source", "n_categories", "categories", *METRICS]
    )


def metrics_long(
    table: pd.DataFrame, averages: pd.DataFrame | None = None, references: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Long form (series, category, source, metric, value) for grouped bar charts; missing values dropped."""
    parts = [df for df in (table, averages, references) if df is not None and not df.empty]
    if not parts:
        return pd.DataFrame(columns=["series", "category", "source", "metric", "value"])
    wide = pd.concat([df[["series", "category", "source", *METRICS]] for df in parts], ignore_index=True)
    long = wide.melt(id_vars=["series", "category", "source"], var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(METRICS)
    return long.dropna(subset=["value"]).reset_index(drop=True)


def table_csv(table: pd.DataFrame) -> bytes:
    """The comparison table as UTF-8 CSV (what the page's download button serves)."""
    return to_csv_bytes(table)


# --------------------------------------------------------------------------- latency paths


def latency_paths(latency: dict) -> dict[str, dict]:
    """Each measured inference path of one run: {"stock": {...}, "ours": {...}, "openvino": {...}}.

    The run's own top-level measurement is "ours"; extra paths come from ``latency["paths"]``. Paths that
    are missing or hold no timing figures are left out, so a run timed on one path just shows one.
    """
    found: dict[str, dict] = {}
    extra = latency.get("paths") if isinstance(latency, dict) else None
    for name, values in (extra or {}).items():
        if isinstance(values, dict) and any(_num(values.get(f)) is not None for f in LATENCY_FIELDS):
            found[str(name)] = values
    # The run's own measurement is the torch path; benchmarks/speed.py re-measures it as "torch".
    if not {"ours", "torch"} & set(found) and any(_num(latency.get(f)) is not None for f in LATENCY_FIELDS):
        found["ours"] = latency
    order = [p for p in PATH_LABELS if p in found] + sorted(p for p in found if p not in PATH_LABELS)
    return {p: found[p] for p in order}


def latency_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Long table: one row per (run, latency path) with the timing figures."""
    series = _series(runs)
    rows = []
    for run in runs:
        for path, values in latency_paths(run.latency or {}).items():
            rows.append(
                {
                    "run_id": run.id,
                    "series": series[run.id],
                    "category": run.category,
                    "path": path,
                    "path_label": PATH_LABELS.get(path, path),
                    **{f: _num(values.get(f)) for f in LATENCY_FIELDS},
                }
            )
    return pd.DataFrame(rows, columns=["run_id", "series", "category", "path", "path_label", *LATENCY_FIELDS])


# --------------------------------------------------------------------------- per-image views


def score_split(records: pd.DataFrame) -> dict[str, np.ndarray]:
    """Image scores of the normal and the anomalous test images."""
    scores = records["score"].to_numpy(dtype=float)
    labels = records["label"].to_numpy(dtype=int)
    return {"normal": scores[labels == 0], "anomalous": scores[labels == 1]}


def per_defect_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Detection rate per defect type at each run's own adaptive threshold (from the stored metrics)."""
    series = _series(runs)
    rows = []
    for run in runs:
        for defect, v in ((run.metrics or {}).get("per_defect") or {}).items():
            rows.append(
                {
                    "run_id": run.id,
                    "series": series[run.id],
                    "category": run.category,
                    "defect_type": defect,
                    "n": v.get("n"),
                    "detected": v.get("detected"),
                    "recall": _num(v.get("recall")),
                }
            )
    return pd.DataFrame(rows, columns=["run_id", "series", "category", "defect_type", "n", "detected", "recall"])


def slider_range(records: pd.DataFrame) -> tuple[float, float]:
    """Score range for a threshold slider: lowest to highest test score (widened when all are equal)."""
    scores = records["score"].to_numpy(dtype=float)
    lo, hi = float(scores.min()), float(scores.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def zero_escapes(records: pd.DataFrame) -> float | None:
    """The lowest anomalous score: the highest threshold with no missed defect (None without defects)."""
    return evaluation.zero_escape_threshold(records["score"].to_numpy(dtype=float), records["label"].to_numpy())


@dataclass
class ThresholdPanel:
    """Everything the what-if panel shows for one threshold."""

    view: dict  # evaluation.threshold_view
    confusion: pd.DataFrame  # 2×2: rows actual, columns predicted
    per_defect: pd.DataFrame  # defect_type, n, detected, missed, recall
    false_positives: pd.DataFrame  # normal images flagged, highest score first
    misses: pd.DataFrame  # anomalous images passed, lowest score first


def threshold_panel(records: pd.DataFrame, threshold: float) -> ThresholdPanel:
    """Confusion matrix, per-defect detection and the offending images at ``threshold``, by counting only."""
    view = evaluation.threshold_view(
        records["score"].to_numpy(dtype=float), records["label"].to_numpy(), records["defect_type"].tolist(), threshold
    )
    confusion = pd.DataFrame(
        [[view["tn"], view["fp"]], [view["fn"], view["tp"]]],
        index=pd.Index(["actual normal", "actual anomalous"]),
        columns=["predicted normal", "predicted anomalous"],
    )
    per_defect = pd.DataFrame(
        [
            {
                "defect_type": name,
                "n": v["n"],
                "detected": v["detected"],
                "missed": v["n"] - v["detected"],
                "recall": v["recall"],
            }
            for name, v in view["per_defect"].items()
        ],
        columns=["defect_type", "n", "detected", "missed", "recall"],
    )
    flagged = records["score"].to_numpy(dtype=float) >= threshold
    labels = records["label"].to_numpy(dtype=int)
    cols = ["index", "file", "defect_type", "score"]
    shown = records.assign(file=records["path"].map(lambda p: "/".join(Path(str(p)).parts[-2:])))
    fps = shown[flagged & (labels == 0)].sort_values("score", ascending=False)[cols]
    misses = shown[~flagged & (labels == 1)].sort_values("score")[cols]
    return ThresholdPanel(view, confusion, per_defect, fps.reset_index(drop=True), misses.reset_index(drop=True))
