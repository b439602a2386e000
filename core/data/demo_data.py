"""A small synthetic dataset in MVTec AD layout, so the product works offline and tests have exact ground truth.

Every image is a woven-metal texture (basket weave of brushed threads) with mild per-image jitter in
phase, brightness, tint, lighting and sensor noise, so normal images differ but share one texture.
Defective images are the same render as a clean image of the same seed plus one local defect; the
ground-truth mask is computed as exactly the pixels that differ from that clean render. The drawing primitives
(lines, wobbly outlines, the changed-pixel mask) are shared with ``core.data.defects``, the controlled-size
synthetic defects that measure a model's detection limit.

    root/<category>/train/good/000.png
                    test/good/000.png
                    test/<defect>/000.png
                    ground_truth/<defect>/000_mask.png   (0/255)
                    demo.json                            (the parameters; written last)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from core.data.defects import changed_mask, fill_region, line_points, wobbly_outline
from core.data.images import to_png_bytes
from core.errors import DatasetError

DEMO_DEFECT_TYPES: tuple[str, ...] = ("scratch", "spot", "crack")
DEMO_KINDS: tuple[str, ...] = ("good", *DEMO_DEFECT_TYPES)
_FORMAT_VERSION = 1  # bump when the rendering changes, so old demo folders are regenerated

_PERIOD = 16  # thread width in pixels at size 256
_BASE_RGB = np.array([150.0, 156.0, 166.0])  # bluish steel


# ---------------------------------------------------------------------------------------------- rendering


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Float HxWx3 texture (0..255 scale, before noise) with this image's jitter."""
    period = _PERIOD * size / 256
    phase_x, phase_y = rng.uniform(0, 3 * size / 256, 2)  # mild misregistration, not a full period
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    u, v = (xx + phase_x) / period, (yy + phase_y) / period
    # Basket weave: in alternate cells the horizontal or the vertical thread lies on top.
    on_top_horizontal = (np.floor(u) + np.floor(v)) % 2 == 0
    across = np.where(on_top_horizontal, v % 1.0, u % 1.0)  # position across the visible thread
    along = np.where(on_top_horizontal, u, v)
    profile = np.sin(np.pi * across) ** 0.6  # rounded thread, dark gaps between threads
    brushing = 0.04 * np.sin(2 * np.pi * (along * 3.0 + 0.37 * np.floor(across * 4)))  # fine lengthwise grain
    shade = 0.35 + 0.6 * profile + brushing
    # Lighting: a gentle gradient in a random direction, and a global brightness change.
    angle = rng.uniform(0, 2 * np.pi)
    gradient = ((xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle)) / size
    shade = shade * (rng.uniform(0.93, 1.07) + rng.uniform(0.0, 0.08) * gradient)
    tint = _BASE_RGB * rng.uniform(0.97, 1.03, 3)
    return shade[..., None] * tint


def _defect_region(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8 HxW mask (0/1) of where the defect is drawn; its position and shape are random."""
    region = np.zeros((size, size), np.uint8)
    margin = size // 8
    cx, cy = rng.uniform(margin * 2, size - margin * 2, 2)
    scale = size / 256
    if kind == "scratch":
        length = rng.uniform(0.25, 0.4) * size
        p0, p1 = line_points(cx, cy, length, rng.uniform(0, np.pi))
        cv2.line(region, p0, p1, 1, thickness=max(1, round(rng.uniform(2.5, 4) * scale)))
    elif kind == "spot":
        region = fill_region((size, size), wobbly_outline(cx, cy, rng.uniform(0.06, 0.10) * size, rng))
    elif kind == "crack":
        # A random walk with sharp turns, plus one short branch.
        step = 7 * scale
        heading = rng.uniform(0, 2 * np.pi)
        pts = [np.array([cx, cy])]
        for _ in range(int(rng.integers(10, 15))):
            heading += rng.uniform(-0.9, 0.9)
            pts.append(pts[-1] + step * rng.uniform(0.6, 1.4) * np.array([np.cos(heading), np.sin(heading)]))
        pts_arr = np.clip(np.array(pts), margin / 2, size - 1 - margin / 2)
        thickness = max(1, round(2 * scale))
        cv2.polylines(region, [np.round(pts_arr).astype(np.int32)], False, 1, thickness=thickness)
        fork = pts_arr[len(pts_arr) // 2]
        bend = heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.2)
        tip = np.clip(fork + 4 * step * np.array([np.cos(bend), np.sin(bend)]), 0, size - 1)
        cv2.line(region, tuple(np.round(fork).astype(int)), tuple(np.round(tip).astype(int)), 1, max(1, thickness - 1))
    return region


def _apply_defect(kind: str, texture: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = texture.copy()
    inside = region.astype(bool)
    if kind == "scratch":  # polished-bright or gouged-dark line
        target = 245.0 if rng.random() < 0.5 else 30.0
        out[inside] = 0.3 * out[inside] + 0.7 * target
    elif kind == "spot":  # rust-coloured stain that keeps some of the texture's shading
        rust = np.array([170.0, 85.0, 35.0]) * rng.uniform(0.85, 1.1)
        lum = out[inside].mean(axis=1, keepdims=True) / _BASE_RGB.mean()
        out[inside] = 0.25 * out[inside] + 0.75 * rust * (0.6 + 0.4 * lum)
    elif kind == "crack":  # deep dark fissure
        out[inside] *= 0.2
    return out


def _finish(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def make_demo_image(kind: str, seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One demo image: (HxWx3 uint8 RGB, HxW bool mask of the defect; all False for ``"good"``).

    ``kind`` is ``"good"`` or one of DEMO_DEFECT_TYPES. The clean texture depends only on ``seed``, so
    ``make_demo_image("good", s)`` is exactly the defect-free version of ``make_demo_image("crack", s)``.
    """
    if kind not in DEMO_KINDS:
        raise ValueError(f"unknown demo image kind {kind!r}; use one of {DEMO_KINDS}")
    if size < 32:
        raise ValueError(f"demo images must be at least 32 pixels wide, got {size}")
    rng = np.random.default_rng(seed)  # texture and noise: shared by all kinds for this seed
    texture = _texture(rng, size)
    noise = rng.normal(0.0, 3.0, texture.shape)
    clean = _finish(texture, noise)
    if kind == "good":
        return clean, np.zeros((size, size), bool)
    defect_rng = np.random.default_rng([seed, DEMO_KINDS.index(kind)])
    region = _defect_region(kind, defect_rng, size)
    image = _finish(_apply_defect(kind, texture, region, defect_rng), noise)
    # Exactly the altered pixels (noise and clipping can, in principle, hide a drawn pixel).
    return image, changed_mask(image, clean)


# ---------------------------------------------------------------------------------------------- dataset


def _image_seed(seed: int, split: str, kind: str, index: int) -> int:
    """A distinct, reproducible seed per image."""
    key = [seed, ("train", "test").index(split), DEMO_KINDS.index(kind), index]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def _expected_files(params: dict) -> list[str]:
    files = [f"train/good/{i:03d}.png" for i in range(params["n_train"])]
    files += [f"test/good/{i:03d}.png" for i in range(params["n_test_good"])]
    for defect in params["defect_types"]:
        for i in range(params["n_test_per_defect"]):
            files += [f"test/{defect}/{i:03d}.png", f"ground_truth/{defect}/{i:03d}_mask.png"]
    return files


def _is_complete(folder: Path, params: dict) -> bool:
    try:
        stored = json.loads((folder / "demo.json").read_text())
    except (OSError, ValueError):
        return False
    return stored == params and all((folder / f).is_file() for f in _expected_files(params))


def _write(folder: Path, params: dict) -> None:
    size, seed = params["size"], params["seed"]
    jobs = [("train", "good", i) for i in range(params["n_train"])]
    jobs += [("test", "good", i) for i in range(params["n_test_good"])]
    jobs += [("test", d, i) for d in params["defect_types"] for i in range(params["n_test_per_defect"])]
    for split, kind, i in jobs:
        image, mask = make_demo_image(kind, _image_seed(seed, split, kind, i), size)
        out = folder / split / kind
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{i:03d}.png").write_bytes(to_png_bytes(image))
        if kind != "good":
            gt = folder / "ground_truth" / kind
            gt.mkdir(parents=True, exist_ok=True)
            (gt / f"{i:03d}_mask.png").write_bytes(to_png_bytes(mask))
    (folder / "test" / "good").mkdir(parents=True, exist_ok=True)  # exists even when n_test_good == 0
    (folder / "demo.json").write_text(json.dumps(params, indent=2) + "\n")  # last: marks the folder complete


def generate_demo_dataset(
    root: Path,
    category: str = "demo",
    *,
    n_train: int = 24,
    n_test_good: int = 8,
    n_test_per_defect: int = 6,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write (or reuse) the demo dataset at ``root/<category>`` and return that folder.

    A complete folder made with the same parameters is returned as is. The dataset is built in a
    hidden temporary folder next to it and renamed into place, so readers never see half of one.
    A folder of that name that is not a demo dataset is never overwritten.
    """
    if not category or category.startswith(".") or Path(category).name != category:
        raise DatasetError(f"Invalid demo category name {category!r}: use a plain folder name such as 'demo'.")
    if n_train < 1 or n_test_good < 0 or n_test_per_defect < 0:
        raise DatasetError("The demo dataset needs at least 1 training image and no negative counts.")
    if seed < 0:
        raise DatasetError(f"The demo seed must be 0 or more, got {seed}.")
    if not 32 <= size <= 2048:
        raise DatasetError(f"Demo image size must be between 32 and 2048 pixels, got {size}.")
    params = {
        "format_version": _FORMAT_VERSION,
        "category": category,
        "n_train": int(n_train),
        "n_test_good": int(n_test_good),
        "n_test_per_defect": int(n_test_per_defect),
        "size": int(size),
        "seed": int(seed),
        "defect_types": list(DEMO_DEFECT_TYPES),
    }
    root = Path(root)
    target = root / category
    if _is_complete(target, params):
        return target
    if target.exists() and not (target / "demo.json").is_file():
        raise DatasetError(
            f"{target} exists and is not a generated demo dataset, so it was left alone. "
            f"Pick another category name or move that folder away."
        )

    try:
        return _build(root, target, params)
    except OSError as exc:
        raise DatasetError(
            f"Could not write the demo dataset to {target}: {exc}. Check free space and permissions."
        ) from None


def _build(root: Path, target: Path, params: dict) -> Path:
    category = params["category"]
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{category}.partial-", dir=root))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the dataset should not be
        _write(staging, params)
        if target.exists():  # an older or damaged demo dataset of ours: move it aside, then delete it
            old = Path(tempfile.mkdtemp(prefix=f".{category}.old-", dir=root))
            os.replace(target, old / category)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished the same dataset first; use theirs.
            if _is_complete(target, params):
                return target
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
