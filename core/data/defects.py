"""Synthetic defects of controlled shape, size and contrast, pasted onto real images with exact masks.

The idea: to know the smallest defect a model catches, show it defects whose size and contrast we choose. Three
shapes cover what inspection engineers meet most:

- ``scratch``: a thin, slightly curved line (1 px wide per 256 px of image side, longer for a larger area);
- ``spot``: a hard-edged disc;
- ``stain``: an irregular blob whose edge fades out (soft), so it has no sharp outline to give it away.

``contrast`` is a grey-level step as a share of full scale (0.2 = 51 of 255 levels), applied towards the side
with more room (a bright surface gets a dark defect), so clipping rarely eats the step. The mask is exactly the
pixels whose value changed, as in the demo data (``core.data.demo_data`` draws its defects with the same
primitives: ``line_points``, ``wobbly_outline``, ``fill_region``, ``changed_mask``).

Everything is deterministic: the same image, shape, area, contrast and seed give the same pixels.

    >>> import numpy as np
    >>> from core.data.defects import paste_defect
    >>> img = np.full((256, 256, 3), 128, np.uint8)
    >>> out, mask = paste_defect(img, "spot", area_fraction=0.001, contrast=0.3, seed=0)
    >>> int(mask.sum())  # about 0.1 % of 65,536 pixels
    65
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFECT_SHAPES: tuple[str, ...] = ("scratch", "spot", "stain")
# The detection-limit study's default grid (core.engine.limit, `aw limit`): 3 shapes x 5 areas x 3 contrasts.
DEFAULT_AREAS: tuple[float, ...] = (0.0001, 0.0004, 0.0015, 0.005, 0.02)  # 0.01 % .. 2 % of the image
DEFAULT_CONTRASTS: tuple[float, ...] = (0.15, 0.3, 0.6)  # grey-level steps: 38, 77, 153 of 255
DEFAULT_N_PER_CELL = 8


# ---------------------------------------------------------------------------------------------- primitives
# Shared with core.data.demo_data: they consume the random generator in a fixed order, so the demo images stay
# byte-identical to what they were before these moved here.


def line_points(cx: float, cy: float, length: float, angle: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """The integer end points of a straight segment of ``length`` through (cx, cy) at ``angle`` (radians)."""
    dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
    return (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy))


def wobbly_outline(
    cx: float, cy: float, radius: float, rng: np.random.Generator, n: int = 48, squash: tuple = (0.7, 1.0)
) -> np.ndarray:
    """An (n, 2) float polygon: a circle of ``radius`` whose radius wobbles (harmonics 2, 3, 5), squashed
    vertically by a random factor in ``squash``. Draws 6 + 1 numbers from ``rng``, in this order."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    wobble = sum(rng.uniform(0, 0.15) * np.sin(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    r = radius * (1 + wobble)
    return np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta) * rng.uniform(*squash)], axis=1)


def fill_region(shape_hw: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """uint8 0/1 mask of a filled polygon (float points, rounded to pixels)."""
    region = np.zeros(shape_hw, np.uint8)
    cv2.fillPoly(region, [np.round(polygon).astype(np.int32)], 1)
    return region


def changed_mask(image: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Exactly the pixels where ``image`` differs from ``clean`` (HxW bool): the ground truth of a pasted defect."""
    return (image != clean).any(axis=2) if image.ndim == 3 else image != clean


# ---------------------------------------------------------------------------------------------- generator


@dataclass(frozen=True)
class PastedDefect:
    """One synthetic defect on one image."""

    image: np.ndarray  # HxWx3 uint8, the defect pasted
    mask: np.ndarray  # HxW bool, exactly the changed pixels
    shape: str
    area_fraction: float  # the target
    contrast: float

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())


def _scratch_alpha(h: int, w: int, area_px: float, rng: np.random.Generator) -> np.ndarray:
    side = min(h, w)
    thickness = max(1, round(side / 256))
    length = area_px / thickness
    while length > 0.7 * side:  # a large scratch gets wider rather than leaving the image
        thickness += 1
        length = area_px / thickness
    angle = rng.uniform(0, np.pi)
    bend = rng.uniform(-0.15, 0.15)  # a slight curve: the control point's offset, as a share of the length
    margin = length / 2 + thickness + 1
    cx = rng.uniform(min(margin, w / 2), max(w - margin, w / 2))
    cy = rng.uniform(min(margin, h / 2), max(h - margin, h / 2))

    def draw(length: float) -> np.ndarray:
        p0, p1 = (np.array(p, float) for p in line_points(cx, cy, max(length, 1.0), angle))
        normal = np.array([-np.sin(angle), np.cos(angle)])
        ctrl = (p0 + p1) / 2 + normal * bend * length
        t = np.linspace(0, 1, max(2, int(length / 2) + 2))[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p1  # quadratic Bezier
        region = np.zeros((h, w), np.uint8)
        cv2.polylines(region, [np.round(curve).astype(np.int32)], False, 1, thickness=thickness)
        return region

    region = draw(length)
    drawn = max(int(region.sum()), 1)
    if abs(drawn - area_px) > 0.1 * area_px and area_px > thickness**2:  # one correction: end caps, rounding
        region = draw(length * area_px / drawn)
    return region.astype(np.float64)


def _spot_alpha(h: int, w: int, area_px: float, rng: np.random.Generator) -> np.ndarray:
    radius = np.sqrt(area_px / np.pi)
    margin = radius + 1
    cx = rng.uniform(min(margin, w / 2), max(w - margin, w / 2))
    cy = rng.uniform(min(margin, h / 2), max(h - margin, h / 2))
    yy, xx = np.ogrid[0:h, 0:w]
    # Sub-pixel centre and an exact radius: even a 6-pixel spot has about the asked-for area.
    return (((xx - cx) ** 2 + (yy - cy) ** 2) <= radius**2).astype(np.float64)


def _stain_alpha(h: int, w: int, area_px: float, rng: np.random.Generator) -> np.ndarray:
    radius = np.sqrt(area_px / np.pi)
    margin = 1.3 * radius + 1
    cx = rng.uniform(min(margin, w / 2), max(w - margin, w / 2))
    cy = rng.uniform(min(margin, h / 2), max(h - margin, h / 2))
    region = fill_region((h, w), wobbly_outline(cx, cy, radius, rng, squash=(0.75, 1.0)))
    # Soft edge: full strength from a third of the radius inwards, fading to nothing at the outline.
    inside = cv2.distanceTransform(region, cv2.DIST_L2, 3)
    feather = max(1.0, radius / 3)
    return np.clip(inside / feather, 0.0, 1.0).astype(np.float64)


_ALPHA = {"scratch": _scratch_alpha, "spot": _spot_alpha, "stain": _stain_alpha}


def defect_rng(seed: int | list[int] | tuple[int, ...]) -> np.random.Generator:
    """The generator for one defect: ``seed`` may be a list of ints (e.g. [seed, shape, area, sample])."""
    return np.random.default_rng(np.random.SeedSequence(list(seed) if isinstance(seed, (list, tuple)) else seed))


def paste_defect(
    image: np.ndarray,
    shape: str,
    area_fraction: float,
    contrast: float,
    seed: int | list[int] | tuple[int, ...] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (HxWx3 uint8) with one ``shape`` defect covering about ``area_fraction`` of it at a grey-level
    step of ``contrast`` (0..1 of full scale); returns (new image, HxW bool mask of exactly the changed pixels)."""
    if shape not in _ALPHA:
        raise ValueError(f"unknown defect shape {shape!r}; use one of {DEFECT_SHAPES}")
    if not 0 < area_fraction < 0.5:
        raise ValueError(f"area_fraction must be between 0 and 0.5, got {area_fraction}")
    if not 0 < contrast <= 1:
        raise ValueError(f"contrast must be in (0, 1], got {contrast}")
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    h, w = image.shape[:2]
    rng = defect_rng(seed)
    alpha = _ALPHA[shape](h, w, max(1.0, area_fraction * h * w), rng)
    base = image.astype(np.float64)
    inside = alpha > 0
    # Towards the side with more room, so the step is not clipped away (a bright surface gets a dark defect).
    local = base[inside].mean() if inside.any() else base.mean()
    sign = -1.0 if local > 127.5 else 1.0
    out = np.clip(np.round(base + sign * contrast * 255.0 * alpha[..., None]), 0, 255).astype(np.uint8)
    return out, changed_mask(out, image)


def make_defect(
    image: np.ndarray, shape: str, area_fraction: float, contrast: float, seed: int | list[int] | tuple[int, ...] = 0
) -> PastedDefect:
    """``paste_defect`` as a record (what was asked for, and what was drawn)."""
    out, mask = paste_defect(image, shape, area_fraction, contrast, seed)
    return PastedDefect(out, mask, shape, float(area_fraction), float(contrast))
