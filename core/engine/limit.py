"""A run's detection limit: the smallest synthetic defect its model catches 95 % of the time.

A test set says how a model does on the defects someone happened to collect. To say "this model catches scratches
down to N pixels", show it defects whose size we choose: ``core.data.defects`` pastes scratches, spots and stains of
controlled area (about 0.01 % to 2 % of the image) and contrast onto the run's held-out *normal* test images (never
seen in training), with exact masks, and the run's own model scores them (``LoadedModel``, the product's scoring
path). Recall per (shape, contrast, area) is counted at two thresholds:

- ``run``: the run's threshold (anomalib's F1-adaptive one, ``metrics.image_threshold``);
- ``zero_escape``: the lowest score of the run's real defective test images — the highest threshold at which none of
  them escapes (``metrics.zero_escape_threshold``): what a line that must not ship a defect would run at.

"Smallest caught" for a shape and contrast is the smallest area whose recall is >= 95 % *and stays so for every larger
area* (a lucky small cell does not count). Areas are stated in pixels of the original image and as a share of it.
With ``n_per_cell`` samples a cell passes 95 % only when at most ``floor(0.05 n)`` are missed (8 samples: none).

The result is stored as ``limit.json`` in the run folder (``RunArtifacts.limit()``) for the Compare page and report.

    from core.engine.limit import detection_limit
    result = detection_limit("RUN_ID")            # about a minute for PatchCore on the demo data, 2 cores
    print("\\n".join(result.statements()))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from core.config import Settings
from core.config import settings as current_settings
from core.data import images
from core.data.defects import (
    DEFAULT_AREAS,
    DEFAULT_CONTRASTS,
    DEFAULT_N_PER_CELL,
    DEFECT_SHAPES,
    paste_defect,
)
from core.engine.inference import LoadedModel
from core.errors import RunError, WorkbenchError
from core.store.artifacts import RunArtifacts, write_json
from core.store.runs import RunRegistry

CATCH_RATE = 0.95
POINTS = ("zero_escape", "run")  # the operating points, the one statements use first
PLURAL = {"scratch": "scratches", "spot": "spots", "stain": "stains"}
POINT_LABELS = {"zero_escape": "at zero escapes", "run": "at the run's threshold"}


@dataclass
class LimitResult:
    """Recall of synthetic defects per (shape, contrast, area) at two thresholds, and the smallest caught."""

    run_id: str
    model: str
    category: str
    seed: int
    shapes: list[str]
    areas: list[float]
    contrasts: list[float]
    n_per_cell: int
    image_px: int  # pixels of a held-out normal image (the first; areas in px refer to it)
    n_normal_images: int
    thresholds: dict[str, float | None]  # "run", "zero_escape"
    normal_flagged: dict[str, float | None]  # share of the real normal test images flagged at each threshold
    cells: list[dict] = field(default_factory=list)  # shape, contrast, area_fraction, area_px, n, recall_<point>
    smallest: list[dict] = field(default_factory=list)  # shape, contrast, point, area_fraction, area_px (None: none)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LimitResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def smallest_for(self, shape: str, point: str, contrast: float | None = None) -> dict | None:
        """The smallest-caught row for a shape at a point; at ``contrast``, default the strongest measured."""
        contrast = max(self.contrasts) if contrast is None else contrast
        return next(
            (r for r in self.smallest if r["shape"] == shape and r["point"] == point and r["contrast"] == contrast),
            None,
        )

    def statements(self, point: str | None = None) -> list[str]:
        """One line per shape: 'smallest defect caught 95 % of the time', at the strongest contrast measured."""
        point = point or next((p for p in POINTS if self.thresholds.get(p) is not None), "run")
        if self.thresholds.get(point) is None:
            return [f"No {POINT_LABELS[point]} threshold for run {self.run_id}: it has no such threshold."]
        out = []
        for shape in self.shapes:
            row = self.smallest_for(shape, point)
            head = f"{self.model} ({self.run_id}): {PLURAL.get(shape, shape + 's')}"
            tail = f"{POINT_LABELS[point]}, contrast {row['contrast']:.2f}" if row else ""
            overkill = self.normal_flagged.get(point)
            if overkill is not None:  # recall means little if the threshold also flags most normal images
                tail += f" (normal test images flagged there: {overkill:.0%})"
            if row is None or row["area_px"] is None:
                biggest = max(self.areas)
                out.append(
                    f"{head} are not caught {CATCH_RATE:.0%} of the time even at {biggest:.2%} of the image, {tail}."
                )
            else:
                out.append(
                    f"{head} are caught {CATCH_RATE:.0%} of the time down to {row['area_px']:,} px "
                    f"({row['area_fraction']:.3%} of the image), {tail}."
                )
        return out


# ---------------------------------------------------------------------------------------------- measuring


def _recall(scores: np.ndarray, threshold: float | None) -> float | None:
    return None if threshold is None or len(scores) == 0 else float((scores >= threshold).mean())


def smallest_caught(cells: list[dict], shape: str, contrast: float, point: str) -> dict:
    """The smallest area whose recall, and every larger area's, is >= CATCH_RATE (area None: no such area)."""
    rows = sorted((c for c in cells if c["shape"] == shape and c["contrast"] == contrast), key=lambda c: c["area"])
    best = None
    for row in reversed(rows):  # from the largest down, while every cell so far passes
        recall = row.get(f"recall_{point}")
        if recall is None or recall < CATCH_RATE:
            break
        best = row
    return {
        "shape": shape,
        "contrast": contrast,
        "point": point,
        "area_fraction": best["area_fraction"] if best else None,
        "area_px": best["area_px"] if best else None,
    }


def _thresholds(art: RunArtifacts, metrics: dict) -> tuple[dict, dict]:
    records = art.records
    labels = records["label"].to_numpy().astype(int)
    scores = records["score"].to_numpy().astype(float)
    zero = metrics.get("zero_escape_threshold")
    if zero is None and (labels == 1).any():
        zero = float(scores[labels == 1].min())
    thresholds = {"run": metrics.get("image_threshold"), "zero_escape": zero}
    normals = scores[labels == 0]
    flagged = {k: _recall(normals, v) for k, v in thresholds.items()}
    return thresholds, flagged


def detection_limit(
    run_id: str,
    shapes: tuple[str, ...] | list[str] = DEFECT_SHAPES,
    areas: tuple[float, ...] | list[float] = DEFAULT_AREAS,
    contrasts: tuple[float, ...] | list[float] = DEFAULT_CONTRASTS,
    n_per_cell: int = DEFAULT_N_PER_CELL,
    seed: int = 0,
    *,
    cfg: Settings | None = None,
    progress: Callable[[int, int], None] | None = None,
    save: bool = True,
    batch_size: int = 8,
) -> LimitResult:
    """Measure run ``run_id``'s detection limit (see the module docstring) and store it as the run's limit.json."""
    cfg = cfg or current_settings()
    shapes = list(dict.fromkeys(shapes))
    unknown = [s for s in shapes if s not in DEFECT_SHAPES]
    if unknown or not shapes:
        raise WorkbenchError(
            f"Unknown defect shape(s) {', '.join(unknown) or '(none)'}: use {', '.join(DEFECT_SHAPES)}."
        )
    areas = sorted({float(a) for a in areas})
    contrasts = sorted({float(c) for c in contrasts})
    if not areas or not all(0 < a < 0.5 for a in areas):
        raise WorkbenchError("Defect areas are shares of the image between 0 and 0.5 (e.g. 0.001 = 0.1 %).")
    if not contrasts or not all(0 < c <= 1 for c in contrasts):
        raise WorkbenchError("Contrasts are grey-level steps as a share of full scale, in (0, 1] (e.g. 0.3).")
    if n_per_cell < 1:
        raise WorkbenchError("At least one sample per cell is needed.")

    registry = RunRegistry(cfg)
    run = registry.get(run_id)
    run_dir = registry.run_dir(run_id)
    art = RunArtifacts(run_dir)
    if not art.has_records:
        raise RunError(f"Run {run_id} has no test results ({run.status}); a detection limit needs a finished run.")
    records = art.records
    normal_paths = records.loc[records["label"] == 0, "path"].tolist()
    if not normal_paths:
        raise RunError(
            f"Run {run_id} has no normal test images: the synthetic defects are pasted onto held-out normal images."
        )
    thresholds, flagged = _thresholds(art, run.metrics or art.metrics())
    start = time.perf_counter()
    model = LoadedModel(run_dir)
    bases = [images.read_image_fast(p) for p in normal_paths]  # decoded once, each reused for many defects

    jobs = [
        (si, ci, ai, k)
        for si in range(len(shapes))
        for ci in range(len(contrasts))
        for ai in range(len(areas))
        for k in range(n_per_cell)
    ]
    scores = np.zeros(len(jobs))
    pixels = np.zeros(len(jobs), dtype=np.int64)
    for begin in range(0, len(jobs), batch_size):
        chunk = jobs[begin : begin + batch_size]
        pasted = []
        for j, (si, ci, ai, k) in enumerate(chunk):
            # One seed per (seed, shape, contrast, area, sample): a cell's defects don't move when the grid changes.
            base = bases[(k + 3 * ai + 7 * ci) % len(bases)]  # spread every cell over all normal images
            key = [seed, DEFECT_SHAPES.index(shapes[si]), round(contrasts[ci] * 1000), round(areas[ai] * 1e6), k]
            image, mask = paste_defect(base, shapes[si], areas[ai], contrasts[ci], key)
            pasted.append(image)
            pixels[begin + j] = int(mask.sum())
        preds = model.predict(
            pasted, names=[f"synthetic {begin + j}" for j in range(len(chunk))], batch_size=batch_size
        )
        scores[begin : begin + len(chunk)] = [p.score for p in preds]
        if progress:
            progress(min(begin + batch_size, len(jobs)), len(jobs))

    cells = []
    job_index = np.array([(si, ci, ai) for si, ci, ai, _ in jobs])
    for si, shape in enumerate(shapes):
        for ci, contrast in enumerate(contrasts):
            for ai, area in enumerate(areas):
                sel = (job_index == (si, ci, ai)).all(axis=1)
                cells.append(
                    {
                        "shape": shape,
                        "contrast": contrast,
                        "area": area,
                        "area_fraction": float(np.median(pixels[sel])) / (bases[0].shape[0] * bases[0].shape[1]),
                        "area_px": int(np.median(pixels[sel])),
                        "n": int(sel.sum()),
                        "score_median": float(np.median(scores[sel])),
                        **{f"recall_{p}": _recall(scores[sel], thresholds[p]) for p in POINTS},
                    }
                )
    smallest = [
        smallest_caught(cells, shape, contrast, point) for shape in shapes for contrast in contrasts for point in POINTS
    ]
    result = LimitResult(
        run_id=run_id,
        model=run.model,
        category=run.category,
        seed=int(seed),
        shapes=shapes,
        areas=areas,
        contrasts=contrasts,
        n_per_cell=int(n_per_cell),
        image_px=int(bases[0].shape[0] * bases[0].shape[1]),
        n_normal_images=len(bases),
        thresholds=thresholds,
        normal_flagged=flagged,
        cells=cells,
        smallest=smallest,
        seconds=round(time.perf_counter() - start, 2),
    )
    if save:
        write_json(art.limit_path, result.to_dict())
    return result


def load_limit(run_dir) -> LimitResult | None:
    """The stored detection limit of a run folder, or None if none was measured."""
    data = RunArtifacts(run_dir).limit()
    return LimitResult.from_dict(data) if data else None
