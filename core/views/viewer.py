"""What the heatmap viewer shows: outcomes at a threshold, filters, sorting, paging, uploads. No Streamlit.

Works on a run's stored test records (``RunArtifacts.records``), so filtering and paging never rerun a
model. Outcomes follow evaluation's convention: ``score >= threshold`` is flagged anomalous, and

* TP: anomalous and flagged,   FN: anomalous but passed (an escape),
* FP: normal but flagged (overkill), TN: normal and passed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.data import images
from core.errors import ImageError
from core.store.artifacts import RunArtifacts, read_json
from core.views import overlays
from core.views.csv_export import to_csv_bytes

OUTCOMES = ("TP", "FP", "TN", "FN")
OUTCOME_HELP = {
    "TP": "anomalous and flagged (caught)",
    "FP": "normal but flagged (overkill)",
    "TN": "normal and passed",
    "FN": "anomalous but passed (escape)",
}
LABELS = ("all", "normal", "anomalous")
SORTS = ("desc", "asc", "index")  # score high→low, low→high, test-set order
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"]
UPLOAD_KEEP_MAX_SIDE = 1024  # uploads are only ever shown at display size; don't keep 20 MP photos in memory


# ---------------------------------------------------------------------------------------------- outcomes


def outcome_labels(labels: Sequence[int], scores: Sequence[float], threshold: float | None) -> list[str | None]:
    """TP/FP/TN/FN per image at ``threshold`` (None everywhere when there is no threshold)."""
    if threshold is None:
        return [None] * len(labels)
    flagged = np.asarray(scores, dtype=np.float64) >= float(threshold)
    anomalous = np.asarray(labels) == 1
    return [("TP" if a else "FP") if f else ("FN" if a else "TN") for a, f in zip(anomalous, flagged, strict=False)]


def with_outcomes(records: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """A copy of the records with ``flagged`` (bool, or None without threshold) and ``outcome`` columns."""
    df = records.copy()
    if threshold is None:
        df["flagged"] = None
    else:
        df["flagged"] = df["score"].astype(float) >= float(threshold)
    df["outcome"] = outcome_labels(df["label"].tolist(), df["score"].tolist(), threshold)
    return df


def filter_records(
    df: pd.DataFrame,
    label: str = "all",
    defect_types: Iterable[str] | None = None,
    outcomes: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Rows matching every given filter. An empty/None ``defect_types`` or ``outcomes`` means "any"."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    keep = pd.Series(True, index=df.index)
    if label != "all":
        keep &= df["label"] == (1 if label == "anomalous" else 0)
    defect_types = list(defect_types or [])
    if defect_types:
        keep &= df["defect_type"].isin(defect_types)
    wanted = list(outcomes or [])
    if wanted:
        if "outcome" not in df:
            raise ValueError("filtering by outcome needs with_outcomes() first")
        keep &= df["outcome"].isin(wanted)
    return df[keep]


def sort_records(df: pd.DataFrame, order: str = "desc") -> pd.DataFrame:
    """By score, highest first ("desc") or lowest first ("asc"), or in test-set order ("index").

    Ties keep test-set order (stable sort), so the grid does not reshuffle between reruns.
    """
    if order not in SORTS:
        raise ValueError(f"order must be one of {SORTS}, got {order!r}")
    if order == "index":
        return df.sort_values("index", kind="stable")
    return df.sort_values("score", ascending=order == "asc", kind="stable")


def n_pages(n_items: int, per_page: int) -> int:
    return max(1, math.ceil(n_items / max(1, int(per_page))))


def paginate(df: pd.DataFrame, page: int, per_page: int) -> tuple[pd.DataFrame, int]:
    """Rows of 1-based ``page`` and that page number, clamped to the pages that exist."""
    per_page = max(1, int(per_page))
    page = min(max(1, int(page)), n_pages(len(df), per_page))
    start = (page - 1) * per_page
    return df.iloc[start : start + per_page], page


def select(
    records: pd.DataFrame,
    threshold: float | None,
    label: str = "all",
    defect_types: Iterable[str] | None = None,
    outcomes: Iterable[str] | None = None,
    order: str = "desc",
) -> pd.DataFrame:
    """with_outcomes → filter_records → sort_records in one call (what the grid shows, before paging)."""
    df = with_outcomes(records, threshold)
    return sort_records(filter_records(df, label, defect_types, outcomes), order)


# ---------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class DisplaySettings:
    """What a run's pictures need, read from its files without loading the model."""

    map_range: tuple[float, float]
    image_threshold: float | None
    pixel_threshold: float | None


def display_settings(run_dir: Path) -> DisplaySettings:
    art = RunArtifacts(Path(run_dir))
    spec = read_json(art.model_json, {}) or {}
    metrics = art.metrics()
    lo, hi = spec.get("map_range", (0.0, 1.0))
    return DisplaySettings((float(lo), float(hi)), metrics.get("image_threshold"), metrics.get("pixel_threshold"))


def same_test_set(dataset_a: dict, dataset_b: dict) -> bool:
    """Two runs were tested on the same images: same dataset kind, folder and category.

    ``max_train_images`` only subsets the *training* images, so it does not matter here.
    """
    keys = ("kind", "root", "category")
    return all(dataset_a.get(k) == dataset_b.get(k) for k in keys)


def comparable_runs(run, runs: Iterable) -> list:
    """The other runs in ``runs`` tested on the same images as ``run``."""
    return [r for r in runs if r.id != run.id and same_test_set(run.dataset, r.dataset)]


def find_by_path(records: pd.DataFrame, path: str) -> int | None:
    """Position (row number) of the record for image ``path``, or None. Paths are compared resolved."""
    hits = np.flatnonzero(records["path"].to_numpy() == path)
    if not hits.size:
        target = _resolved(path)
        hits = np.flatnonzero([_resolved(p) == target for p in records["path"]])
    return int(hits[0]) if hits.size else None


def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return str(path)


# ---------------------------------------------------------------------------------------------- pictures


def load_display_image(
    path: str, max_side: int | None = overlays.DISPLAY_MAX_SIDE
) -> tuple[np.ndarray | None, str | None]:
    """(display-size RGB, None), or (None, message) when the test image can't be read any more."""
    try:
        return overlays.fit_display(images.read_image(path), max_side), None
    except ImageError as exc:
        return None, f"{exc} The heat map is shown without the photo."


def gt_mask(record: dict | pd.Series, stored: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Ground-truth mask at ``shape`` for the outline; None for an image without a defect mask.

    The original mask file gives a sharp outline; the stored model-resolution mask is the fallback
    (blocky on big images, but always there).
    """
    mask_path = record.get("mask_path")
    if isinstance(mask_path, str) and mask_path and Path(mask_path).is_file():  # None/NaN: no mask file
        try:
            return images.read_mask(mask_path, shape=shape)
        except ImageError:
            pass
    if stored is None or not np.asarray(stored).any():
        return None
    return overlays.resize_mask(stored, shape)


def original_name(record: dict | pd.Series) -> str:
    """The image as its owner knows it: the original file of an imported own image, else the file itself."""
    source = record.get("source") if hasattr(record, "get") else None
    return str(source) if isinstance(source, str) and source else str(record["path"])


def verdict_text(flagged: bool | None) -> str:
    return "no threshold" if flagged is None else ("ANOMALOUS" if flagged else "normal")


def truth_text(label: int, defect_type: str) -> str:
    return "normal" if int(label) == 0 else f"anomalous ({defect_type})"


# ---------------------------------------------------------------------------------------------- uploads


def score_uploads(model, files: Sequence[tuple[str, bytes]], cache: dict | None = None) -> list:
    """Score uploaded (name, bytes) pairs with a loaded model; one ``Prediction`` per file, in order.

    A file that can't be decoded gets ``error`` set and the others still run. Results are memoised in
    ``cache`` (keyed by content and name) so that moving a slider does not rescore every upload; the
    caller keeps one cache per model. Kept images are downscaled, as they are only shown at display size.
    """
    from core.engine.inference import Prediction  # torch: only when uploads are scored, not at page start-up

    cache = {} if cache is None else cache
    keys = [(hashlib.sha1(bytes(data)).hexdigest(), name) for name, data in files]
    todo = [(k, name, bytes(data)) for k, (name, data) in zip(keys, files, strict=False) if k not in cache]
    if todo:
        try:
            preds = model.predict([d for _, _, d in todo], names=[n for _, n, _ in todo])
        except Exception:  # noqa: BLE001 - one odd image must not sink the batch: retry one by one
            preds = []
            for _, name, data in todo:
                try:
                    preds.extend(model.predict([data], names=[name]))
                except Exception as exc:  # noqa: BLE001
                    preds.append(Prediction(name=name, error=f"{name} could not be scored: {exc}"))
        for (key, _, _), pred in zip(todo, preds, strict=False):
            if pred.image is not None:
                pred.image = overlays.fit_display(pred.image, UPLOAD_KEEP_MAX_SIDE)
            cache[key] = pred
    return [cache[k] for k in keys]


def uploads_table(preds: Sequence, threshold: float | None = None) -> pd.DataFrame:
    """One row per upload: name, score, verdict, error (and the threshold the verdict used)."""
    rows = []
    for p in preds:
        rows.append(
            {
                "name": p.name,
                "score": None if p.score is None else float(p.score),
                "verdict": "" if p.error else verdict_text(p.is_anomalous),
                "error": p.error or "",
                "threshold": threshold,
            }
        )
    return pd.DataFrame(rows, columns=["name", "score", "verdict", "error", "threshold"])


def table_csv(df: pd.DataFrame) -> bytes:
    return to_csv_bytes(df)  # names that look like formulas are escaped (core.views.csv_export)
