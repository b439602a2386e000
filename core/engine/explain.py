"""Why is an image flagged? The hottest region next to its closest normal, at the same scale.

PatchCore scores an image by its patch that is farthest from every patch of the memory bank (the bank: a coreset of
the training images' patches). So the honest explanation of a verdict is that one patch and its nearest bank entry:
"this patch is far from everything normal; the closest normal looks like this". The bank keeps its provenance
(``bank_provenance.npz``: training image, patch row and col per entry, written at fit, core.models.provenance), so
the nearest entry is shown as a crop of the training image it came from, with a box on that image.

Both crops are cut at the same scale: a window of ``CONTEXT`` × ``CONTEXT`` feature-grid cells around the patch,
in model-input coordinates, mapped back to each image's own pixels (the model resizes every image to the same
input size, so equal windows in model coordinates show equal amounts of content), then resized to ``CROP_SIDE``.

The distance is the scoring distance: the same features (the model's ``patch_features``, as at fit) and the same
nearest-neighbour arithmetic (``core.engine.inference.nearest_patch``) as scoring; the image score is this maximum
re-weighted by anomalib's neighbourhood weight (at most 1), so ``distance >= score``.

Models without a memory bank get the top ``TOP_REGIONS`` hot regions of the anomaly map (crops with their map
values) and, when the run is indexed for similarity search, the nearest normal training image.

    from core.engine.explain import explain
    from core.engine.inference import LoadedModel
    from core.config import settings

    loaded = LoadedModel(settings().run_dir("RUN_ID"))          # the run's current version
    why = explain(loaded, "path/to/flagged.png")
    print(why.summary)  # "hottest patch (row 5, col 9): distance 3.21 to train/good/012.png box (64, 80, 80, 96)"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from core import models
from core.data import images
from core.errors import WorkbenchError
from core.models.knn import nearest_patch
from core.similarity.embeddings import similar
from core.store.artifacts import BankProvenance

CONTEXT = 3  # crop window, in feature-grid cells (odd: the patch in the middle)
CROP_SIDE = 192  # both crops are resized to this many pixels a side
TOP_REGIONS = 3
BOX_COLOUR = (255, 0, 255)  # magenta, as the viewer's predicted-defect outline

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the image's own pixels (x1, y1 exclusive)


@dataclass
class Region:
    """A hot region of the explained image."""

    box: Box
    score: float  # anomaly-map value at its peak (bank models: the patch distance)
    crop: np.ndarray  # CROP_SIDE² RGB, the box outlined


@dataclass
class NearestPatch:
    """The memory-bank entry nearest to the hottest patch, and where it came from."""

    bank_index: int
    train_path: str
    row: int
    col: int
    box: Box  # in the training image's pixels
    distance: float
    crop: np.ndarray  # CROP_SIDE² RGB at the same scale as the hot crop, the box outlined


@dataclass
class Explanation:
    name: str
    score: float
    flagged: bool | None
    version: int
    hot: Region  # the hottest region (bank models: the hottest patch)
    nearest: NearestPatch | None = None  # bank models with provenance
    regions: list[Region] = field(default_factory=list)  # the top hot regions, hottest first
    nearest_image: dict | None = None  # {"path", "similarity"}: the most similar normal training image, if indexed
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        if self.nearest is not None:
            n = self.nearest
            return (
                f"hottest patch box {self.hot.box}: distance {n.distance:.3f} to its nearest normal patch, "
                f"{Path(n.train_path).name} box {n.box}"
            )
        parts = [f"region {r.box} map {r.score:.3f}" for r in self.regions]
        if self.nearest_image:
            parts.append(f"nearest normal image {Path(self.nearest_image['path']).name}")
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- geometry


def cell_box(row: int, col: int, grid: tuple[int, int], shape: tuple[int, int], cells: int = 1) -> Box:
    """The box of ``cells`` × ``cells`` grid cells centred on (row, col) in an image of ``shape`` (H, W); may reach
    past the image edge (``crop`` pads)."""
    h, w = grid
    height, width = shape
    half = cells // 2
    y0, y1 = (row - half) * height / h, (row - half + cells) * height / h
    x0, x1 = (col - half) * width / w, (col - half + cells) * width / w
    return round(x0), round(y0), round(x1), round(y1)


def crop(rgb: np.ndarray, window: Box, box: Box | None = None, side: int = CROP_SIDE) -> np.ndarray:
    """``window`` of ``rgb`` (padded with black past the edges) resized to side × side, with ``box`` outlined."""
    x0, y0, x1, y1 = window
    height, width = rgb.shape[:2]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0))) if pad else rgb
    piece = padded[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    out = cv2.resize(np.ascontiguousarray(piece), (side, side), interpolation=cv2.INTER_AREA)
    if box is not None:
        sx, sy = side / max(1, x1 - x0), side / max(1, y1 - y0)
        p0 = (int((box[0] - x0) * sx), int((box[1] - y0) * sy))
        p1 = (int((box[2] - x0) * sx) - 1, int((box[3] - y0) * sy) - 1)
        cv2.rectangle(out, p0, p1, BOX_COLOUR, max(1, side // 96))
    return out


def draw_box(rgb: np.ndarray, box: Box, max_side: int = 384) -> np.ndarray:
    """A copy of ``rgb`` scaled to at most ``max_side`` with ``box`` outlined (a whole training image, where)."""
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    out = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    p0 = (int(box[0] * scale), int(box[1] * scale))
    p1 = (int(box[2] * scale) - 1, int(box[3] * scale) - 1)
    cv2.rectangle(out, p0, p1, BOX_COLOUR, max(2, round(3 * scale)))
    return out


def _region(rgb: np.ndarray, row: int, col: int, grid: tuple[int, int], score: float) -> Region:
    box = cell_box(row, col, grid, rgb.shape[:2])
    return Region(box, float(score), crop(rgb, cell_box(row, col, grid, rgb.shape[:2], CONTEXT), box))


# ---------------------------------------------------------------------------------------------- explain


def has_bank(loaded) -> bool:
    """Whether the run's model scores against a memory bank of training patches (PatchCore)."""
    bank = getattr(loaded.module.model, "memory_bank", None)
    return isinstance(bank, torch.Tensor) and bank.ndim == 2 and bank.shape[0] > 0


@torch.inference_mode()
def patch_embedding(loaded, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """(h·w, d) patch features of one image, computed as at fit (the model's ``patch_features``), and the grid."""
    entry = models.get_entry(loaded.model_name)
    feats = entry.patch_features(loaded.module.model, loaded.preprocess([rgb]))  # (1, d, h, w)
    grid = (int(feats.shape[-2]), int(feats.shape[-1]))
    rows = feats[0].permute(1, 2, 0).reshape(grid[0] * grid[1], -1)  # row-major, as anomalib's reshape_embedding
    return rows.to(loaded.module.model.memory_bank.dtype).contiguous(), grid


def top_regions(anomaly_map: np.ndarray, k: int = TOP_REGIONS, cells: int = 8) -> list[tuple[int, int, float]]:
    """The ``k`` hottest cells of a map on a ``cells`` × ``cells`` grid as (row, col, peak value), hottest first;
    each pick blanks its neighbours so the regions are distinct."""
    ys = np.linspace(0, anomaly_map.shape[0], cells + 1).astype(int)[:-1]
    xs = np.linspace(0, anomaly_map.shape[1], cells + 1).astype(int)[:-1]
    peaks = np.maximum.reduceat(np.maximum.reduceat(anomaly_map.astype(np.float32), ys, axis=0), xs, axis=1)
    work = peaks.copy()
    out: list[tuple[int, int, float]] = []
    for _ in range(min(k, cells * cells)):
        r, c = np.unravel_index(int(np.argmax(work)), work.shape)
        if not np.isfinite(work[r, c]):
            break
        out.append((int(r), int(c), float(peaks[r, c])))
        work[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2] = -np.inf
    return out


def explain(loaded, image, name: str | None = None, nearest_image: bool = True, cfg=None) -> Explanation:
    """Why ``loaded`` (a LoadedModel, any version) scores ``image`` (a path, bytes or an RGB array) as it does."""
    rgb = image if isinstance(image, np.ndarray) else loaded.read_image(image, name=name)
    name = name or (str(image) if isinstance(image, (str, Path)) else "image")
    scores, maps = loaded.forward(loaded.preprocess([rgb]))
    score = float(scores[0])
    notes: list[str] = []
    regions = [
        _region(rgb, r, c, (8, 8), v)  # the map's top regions on a coarse grid (any model)
        for r, c, v in top_regions(maps[0])
    ]
    if has_bank(loaded):
        hot, nearest = _explain_bank(loaded, rgb, notes)
        return Explanation(name, score, loaded.verdict(score), loaded.version, hot, nearest, regions, None, notes)
    similar = _nearest_normal_image(loaded, rgb, notes, cfg) if nearest_image else None
    return Explanation(name, score, loaded.verdict(score), loaded.version, regions[0], None, regions, similar, notes)


def _explain_bank(loaded, rgb: np.ndarray, notes: list[str]) -> tuple[Region, NearestPatch | None]:
    rows, grid = patch_embedding(loaded, rgb)
    bank = loaded.module.model.memory_bank
    dist, idx = nearest_patch(rows, bank)
    hottest = int(torch.argmax(dist))
    row, col = divmod(hottest, grid[1])
    distance, bank_index = float(dist[hottest]), int(idx[hottest])
    hot = _region(rgb, row, col, grid, distance)
    provenance = BankProvenance.load(loaded.model_dir)
    if provenance is None or len(provenance) != bank.shape[0]:
        notes.append(
            "This run's memory bank has no provenance (trained before it was kept): retrain it to see which "
            "training patch is the closest normal."
        )
        return hot, None
    t_index, t_row, t_col = (int(v) for v in provenance.entries[bank_index])
    train_path = provenance.train_paths[t_index]
    try:
        train_rgb = images.read_image(train_path)
    except WorkbenchError as exc:
        notes.append(f"The nearest normal patch is from {train_path}, which cannot be read now: {exc}")
        return hot, None
    shape = train_rgb.shape[:2]
    box = cell_box(t_row, t_col, provenance.grid, shape)
    nearest = NearestPatch(
        bank_index,
        train_path,
        t_row,
        t_col,
        box,
        distance,
        crop(train_rgb, cell_box(t_row, t_col, provenance.grid, shape, CONTEXT), box),
    )
    return hot, nearest


def _nearest_normal_image(loaded, rgb: np.ndarray, notes: list[str], cfg) -> dict | None:
    try:
        _, hits = similar(loaded.run_dir.name, loaded, rgb, using="global", k=1, label=0, split="train", cfg=cfg)
    except (ImportError, WorkbenchError) as exc:
        notes.append(f"No nearest normal image: the run's similarity index is not available ({exc}).")
        return None
    if not hits:
        notes.append("No nearest normal image: the run has no indexed training images.")
        return None
    return {"path": hits[0].payload.get("image_path"), "similarity": float(getattr(hits[0], "score", 0.0))}
