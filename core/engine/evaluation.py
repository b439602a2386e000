"""Metrics and threshold views computed from stored per-test-image records.

Everything here works on plain arrays saved after a run (image scores, labels, defect types and,
optionally, anomaly maps with ground-truth masks), so moving a threshold slider in the UI never
reruns a model. Metric values come from anomalib / torchmetrics; only counting is done by hand.
All public functions return JSON-serialisable dicts: python floats/ints, NaN as ``None``.

Conventions:

* higher score = more anomalous; ``score >= threshold`` means "predicted anomalous";
* ``labels``: 0 normal, 1 anomalous; ``defect_types``: "good" for normal images;
* thresholds are in raw score units (whatever the model produced, not normalised).

Two traps in the library metrics, handled below:

* torchmetrics treats any prediction outside [0, 1] as a logit and applies a sigmoid. Raw anomaly
  scores are not probabilities; in float32 the sigmoid saturates everything above ~17 to exactly
  1.0, so anomalib's ``AUROC``/``AUPR`` silently collapse to 0.5. We min-max scale scores to [0, 1]
  (float64) before those metrics: rank-based metrics are unchanged by it.
* torchmetrics' ``BinaryF1Score(threshold=t)`` predicts ``score > t`` while anomalib's adaptive
  threshold comes from a precision-recall curve where ``score >= t`` is positive. We therefore
  binarise with ``>=`` ourselves and hand 0/1 predictions to the F1 metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.metrics import AUPR, AUPRO, AUROC, BinaryPrecisionRecallCurve, F1AdaptiveThreshold
from torchmetrics.classification import BinaryF1Score, BinaryROC

from core.errors import WorkbenchError

PIXEL_KEYS = (
    "pixel_auroc",
    "pixel_f1",
    "pixel_threshold",
    "aupro",
    "pixel_subsampled",
    "pixel_count",
    "aupro_resolution",
)
AUPRO_FPR_LIMIT = 0.3
# AUPRO needs whole maps (connected regions); ~1.3 s for 80x256x256 (5.2 M pixels) on 2 CPU cores,
# so 10 M pixels keeps it within a few seconds. Larger sets are downsampled.
AUPRO_MAX_PIXELS = 10_000_000
_SAMPLE_SEED = 0  # fixed: the same records always give the same pixel metrics


# --------------------------------------------------------------------------- helpers


def _clean(value: Any) -> Any:
    """Turn numpy/torch values into plain JSON types; NaN and inf become None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value] if value.ndim else _clean(value[()])
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.float32):
        # torchmetrics computes in float32: keep its shortest repr (0.8, not 0.800000011920929).
        return float(str(value)) if np.isfinite(value) else None
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _metric(metric_cls: type, preds: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, **kw: Any) -> Any:
    """Run one anomalib metric on two arrays (anomalib metrics read named fields off a batch)."""
    if metric_cls is not AUPRO:  # AUPRO takes no torchmetrics kwargs
        # Inputs are validated here already; torchmetrics' own checks cost ~0.5 s per 2 M pixels.
        kw.setdefault("validate_args", False)
    metric = metric_cls(fields=("preds", "target"), **kw)
    metric.update(SimpleNamespace(preds=torch.as_tensor(preds), target=torch.as_tensor(target)))
    return metric.compute()


def _unit_scale(x: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] in float64, keeping the order (see module docstring: sigmoid trap)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo)


def _f1_at(preds: np.ndarray, target: np.ndarray, threshold: float) -> torch.Tensor:
    """torchmetrics F1 of ``preds >= threshold`` against 0/1 targets."""
    flagged = torch.from_numpy((preds >= threshold).astype(np.int64))
    return BinaryF1Score(validate_args=False)(flagged, torch.as_tensor(target, dtype=torch.int64))


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _validate(scores: Any, labels: Any, defect_types: Any = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Check and convert the per-image records; raise WorkbenchError on anything unusable."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise WorkbenchError(f"scores and labels must be 1-D lists, got shapes {s.shape} and {y.shape}.")
    if s.size == 0:
        raise WorkbenchError("No test images to evaluate: scores are empty.")
    if y.size != s.size:
        raise WorkbenchError(f"scores has {s.size} entries but labels has {y.size}; they must match.")
    if not np.isfinite(s).all():
        raise WorkbenchError("Some anomaly scores are NaN or infinite; the run's results are unusable.")
    if not np.isin(y, (0, 1)).all():
        raise WorkbenchError("labels must be 0 (normal) or 1 (anomalous).")
    d = ["good" if lab == 0 else "anomalous" for lab in y] if defect_types is None else [str(t) for t in defect_types]
    if len(d) != s.size:
        raise WorkbenchError(f"scores has {s.size} entries but defect_types has {len(d)}; they must match.")
    return s, y.astype(np.int64), d


def _per_defect(s: np.ndarray, y: np.ndarray, d: list[str], threshold: float | None) -> dict[str, dict]:
    """Recall per defect type over the anomalous images (normal images are covered by the FPR)."""
    table: dict[str, dict] = {}
    types = np.asarray(d, dtype=object)
    for name in sorted(set(types[y == 1])):
        sel = (y == 1) & (types == name)
        n = int(sel.sum())
        detected = None if threshold is None else int((s[sel] >= threshold).sum())
        table[name] = {"n": n, "detected": detected, "recall": None if detected is None else detected / n}
    return table


# --------------------------------------------------------------------------- image level


def zero_escape_threshold(scores: Any, labels: Any) -> float | None:
    """Highest threshold that still flags every anomalous image: the lowest anomalous score.

    Returns None when there is no anomalous image.
    """
    s, y, _ = _validate(scores, labels)
    return float(s[y == 1].min()) if (y == 1).any() else None


def threshold_view(scores: Any, labels: Any, defect_types: Any, threshold: float) -> dict:
    """Confusion counts and rates at one threshold (``score >= threshold`` is anomalous).

    Pure counting, so it is instant for a UI slider. Keys: threshold, n, tp, fp, tn, fn, escapes (= fn),
    recall, fpr (overkill: share of normal images flagged), precision, f1, per_defect. A rate whose
    denominator is zero is None.
    """
    s, y, d = _validate(scores, labels, defect_types)
    flagged = s >= float(threshold)
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int((~flagged & (y == 0)).sum())
    return _clean(
        {
            "threshold": float(threshold),
            "n": int(s.size),
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "escapes": fn,
            "recall": _ratio(tp, tp + fn),
            "fpr": _ratio(fp, fp + tn),
            "precision": _ratio(tp, tp + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "per_defect": _per_defect(s, y, d, float(threshold)),
        }
    )


def image_metrics(scores: Any, labels: Any, defect_types: Any) -> dict:
    """Image-level metrics of one test set.

    Keys: image_auroc, image_aupr (average precision), image_f1 and image_threshold,
    zero_escape_threshold, fpr_at_full_recall, n_normal, n_anomalous, per_defect, notes.

    ``image_threshold`` is anomalib's ``F1AdaptiveThreshold``: the threshold that maximises F1 *on these
    same test scores*. It is what anomalib reports, but it is optimistic: a threshold chosen on the test
    set itself, not one you could have fixed beforehand. ``image_f1`` is the F1 at that threshold.

    ``fpr_at_full_recall`` ("overkill at zero escapes") is the share of normal images flagged at
    ``zero_escape_threshold``, the highest threshold that still flags every anomalous image.
    """
    s, y, d = _validate(scores, labels, defect_types)
    n_anom = int(y.sum())
    n_norm = int(y.size - n_anom)
    notes: list[str] = []
    auroc = aupr = f1 = threshold = None
    if n_anom and n_norm:
        auroc = _metric(AUROC, _unit_scale(s), y)
        aupr = _metric(AUPR, _unit_scale(s), y)
        threshold = float(_metric(F1AdaptiveThreshold, s, y))  # PR-curve based: raw scores are fine
        f1 = _f1_at(s, y, threshold)
    else:
        missing = "anomalous" if not n_anom else "normal"
        notes.append(f"No {missing} test images: AUROC, AUPR, F1 and the adaptive threshold are undefined.")
    zet = float(s[y == 1].min()) if n_anom else None
    fpr_full = _ratio(int((s[y == 0] >= zet).sum()), n_norm) if zet is not None else None
    return _clean(
        {
            "image_auroc": auroc,
            "image_aupr": aupr,
            "image_f1": f1,
            "image_threshold": threshold,
            "zero_escape_threshold": zet,
            "fpr_at_full_recall": fpr_full,
            "n_normal": n_norm,
            "n_anomalous": n_anom,
            "per_defect": _per_defect(s, y, d, threshold),
            "notes": notes,
        }
    )


def _downsample(size: int, max_points: int) -> list[int]:
    """Evenly spaced indices (at most max_points) that always include the first and last point."""
    if size <= max_points:
        return list(range(size))
    return sorted(set(np.linspace(0, size - 1, max(max_points, 2)).round().astype(int).tolist()))


def curves(scores: Any, labels: Any, max_points: int = 300) -> dict:
    """ROC and precision-recall curves for plotting, each list at most ``max_points`` long.

    Returns {"roc": {"fpr", "tpr", "thresholds"}, "pr": {"precision", "recall", "thresholds"}, "notes"}.
    Thresholds are raw scores; the curve end where nothing is flagged gets a threshold just above
    the highest score. "roc" is None unless both classes are present; "pr" is None without anomalies.
    """
    s, y, _ = _validate(scores, labels)
    notes: list[str] = []
    above_max = float(np.nextafter(s.max(), np.inf))  # "flag nothing" (JSON has no +inf)
    roc = pr = None
    if y.any() and not y.all():
        # BinaryROC is what anomalib's AUROC integrates; feed [0,1]-scaled scores (sigmoid trap).
        scaled = _unit_scale(s)
        fpr, tpr, thr = BinaryROC(validate_args=False)(torch.from_numpy(scaled), torch.from_numpy(y))
        # Each threshold is one of the scaled scores: look the raw score up rather than un-scaling,
        # so that threshold_view(t) lands exactly on the curve point (no rounding across a score).
        order = np.argsort(scaled, kind="stable")
        pos = np.searchsorted(scaled[order], thr.numpy()).clip(0, s.size - 1)
        thr_raw = s[order][pos]
        thr_raw[0] = above_max  # torchmetrics' sentinel first point (fpr = tpr = 0)
        keep = _downsample(len(fpr), max_points)
        roc = {
            "fpr": fpr.numpy()[keep],
            "tpr": tpr.numpy()[keep],
            "thresholds": thr_raw[keep],
        }
    else:
        notes.append("ROC curve needs both normal and anomalous images.")
    if y.any():
        # anomalib's PR curve skips the sigmoid, so thresholds are raw scores already. torchmetrics
        # appends a final (recall 0, precision 1) point with no threshold: give it above_max.
        prec, rec, thr = BinaryPrecisionRecallCurve(validate_args=False)(torch.from_numpy(s), torch.from_numpy(y))
        thr_all = np.append(np.atleast_1d(thr.double().numpy()), above_max)
        keep = _downsample(len(prec), max_points)
        pr = {
            "precision": prec.numpy()[keep],
            "recall": rec.numpy()[keep],
            "thresholds": thr_all[keep],
        }
    else:
        notes.append("Precision-recall curve needs anomalous images.")
    return _clean({"roc": roc, "pr": pr, "notes": notes})


# --------------------------------------------------------------------------- pixel level


def _pixel_arrays(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check maps/masks and return them as (N, H, W) float32 maps and bool masks."""
    m = np.asarray(maps, dtype=np.float32)
    g = np.asarray(masks)
    # (N, 1, H, W) is what anomalib stores; drop the channel.
    m = m[:, 0] if m.ndim == 4 and m.shape[1] == 1 else m
    g = g[:, 0] if g.ndim == 4 and g.shape[1] == 1 else g
    if m.size == 0:
        raise WorkbenchError("No anomaly maps to evaluate: maps are empty.")
    if m.ndim != 3:
        raise WorkbenchError(f"anomaly maps must have shape (N, H, W), got {m.shape}.")
    if g.shape != m.shape:
        raise WorkbenchError(f"masks have shape {g.shape} but maps have {m.shape}; resize them to match.")
    if not np.isfinite(m).all():
        raise WorkbenchError("Some anomaly map values are NaN or infinite.")
    return m, g > 0  # > 0: masks saved as 0/255 PNGs count too


def pixel_metrics(maps: Any, masks: Any, max_pixels: int = 2_000_000, aupro_max_pixels: int = AUPRO_MAX_PIXELS) -> dict:
    """Pixel-level metrics from raw anomaly maps and ground-truth masks of the same (N, H, W) shape.

    Keys: pixel_auroc, pixel_f1, pixel_threshold (anomalib F1-adaptive, raw map units), aupro
    (anomalib AUPRO, FPR limit 0.3), pixel_subsampled, pixel_count, aupro_resolution ([h, w]), notes.

    Memory/time safety: when N*H*W > ``max_pixels``, AUROC/F1/threshold use a fixed-seed uniform sample
    of ``max_pixels`` pixels (``pixel_subsampled`` True). AUPRO needs whole maps (connected defect
    regions), so when N*H*W > ``aupro_max_pixels`` maps and masks are area-downsampled instead and
    ``aupro_resolution`` says to what.
    """
    m, g = _pixel_arrays(maps, masks)
    result: dict[str, Any] = dict.fromkeys(PIXEL_KEYS)
    result["notes"] = notes = []
    if not g.any() or g.all():
        notes.append("Masks have no anomalous (or no normal) pixels: pixel metrics are undefined.")
        return _clean(result)

    flat_m, flat_g = m.reshape(-1), g.reshape(-1)
    subsampled = flat_m.size > max_pixels
    if subsampled:
        idx = np.random.default_rng(_SAMPLE_SEED).choice(flat_m.size, size=max_pixels, replace=False)
        idx.sort()  # sequential reads
        flat_m, flat_g = flat_m[idx], flat_g[idx]
    result["pixel_subsampled"] = subsampled
    result["pixel_count"] = int(flat_m.size)
    target = flat_g.astype(np.int64)
    if target.any() and not target.all():
        result["pixel_auroc"] = _metric(AUROC, _unit_scale(flat_m), target)
        threshold = float(_metric(F1AdaptiveThreshold, flat_m, target))
        result["pixel_threshold"] = threshold
        result["pixel_f1"] = _f1_at(flat_m, target, threshold)
    else:
        notes.append("The pixel sample holds only one class; raise max_pixels for pixel AUROC/F1.")

    result["aupro"], result["aupro_resolution"] = _aupro(m, g, aupro_max_pixels, notes)
    if subsampled:
        notes.append(f"Pixel AUROC/F1 use a fixed random sample of {max_pixels:,} of {m.size:,} pixels.")
    return _clean(result)


def _aupro(m: np.ndarray, g: np.ndarray, max_pixels: int, notes: list[str]) -> tuple[Any, list[int]]:
    """anomalib AUPRO (FPR limit 0.3) over whole maps, downsampled first if there are too many pixels."""
    n, h, w = m.shape
    maps_t = torch.from_numpy(m)
    masks_t = torch.from_numpy(g.astype(np.uint8))
    if n * h * w > max_pixels:
        factor = math.sqrt(n * h * w / max_pixels)
        size = (max(1, int(h / factor)), max(1, int(w / factor)))
        # Area averaging for maps; a pixel is defective if at least half of its area was.
        maps_t = F.interpolate(maps_t[:, None], size=size, mode="area")[:, 0]
        masks_t = (F.interpolate(masks_t[:, None].float(), size=size, mode="area")[:, 0] >= 0.5).to(torch.uint8)
        notes.append(f"AUPRO computed on maps downsampled from {h}x{w} to {size[0]}x{size[1]}.")
        h, w = size
        if not masks_t.any():
            notes.append("Defect regions vanished when downsampling for AUPRO; AUPRO is undefined.")
            return None, [h, w]
    return _metric(AUPRO, maps_t, masks_t, fpr_limit=AUPRO_FPR_LIMIT), [h, w]


# --------------------------------------------------------------------------- combined


def evaluate(
    scores: Any,
    labels: Any,
    defect_types: Any,
    maps: Any = None,
    masks: Any = None,
    pixel_index: Sequence[int] | None = None,
) -> dict:
    """Image metrics merged with pixel metrics; pixel keys are None without maps and masks. ``pixel_index``
    restricts pixel metrics to those images (e.g. normal images plus the abnormal ones that have a mask)."""
    result = image_metrics(scores, labels, defect_types)
    if maps is None or masks is None:
        result.update(dict.fromkeys(PIXEL_KEYS))
        if maps is not None or masks is not None:
            result["notes"].append("Pixel metrics need both anomaly maps and ground-truth masks.")
        return result
    n_maps = len(maps)
    if n_maps != result["n_normal"] + result["n_anomalous"]:
        raise WorkbenchError(f"{n_maps} anomaly maps for {result['n_normal'] + result['n_anomalous']} scores.")
    if pixel_index is not None:
        idx = np.asarray(pixel_index, dtype=np.int64)
        maps, masks = np.asarray(maps)[idx], np.asarray(masks)[idx]
    pixel = pixel_metrics(maps, masks)
    result["notes"] += pixel.pop("notes")
    result.update(pixel)
    return result


def average_metrics(metric_dicts: Sequence[dict]) -> dict:
    """Mean of every numeric key over several categories' metric dicts, ignoring None.

    Booleans, lists and nested dicts (per_defect, notes) are skipped. ``n_categories`` is the
    number of dicts given; a key missing or None everywhere is left out.
    """
    values: dict[str, list[float]] = {}
    for metrics in metric_dicts:
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                continue
            if math.isfinite(value):
                values.setdefault(key, []).append(float(value))
    averaged: dict[str, Any] = {key: float(np.mean(v)) for key, v in values.items()}
    averaged["n_categories"] = len(metric_dicts)
    return _clean(averaged)
