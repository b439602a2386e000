"""Anomaly-map pictures: colour maps, overlays on the photo, ground-truth and predicted outlines.

Plain numpy/OpenCV (no Streamlit), all images RGB uint8. Conventions:

* Anomaly maps are raw model output at model resolution; they are resized to the photo (bilinear), never
  the photo to the map, so the outlines land on the real pixels.
* The colour scale is fixed by ``vmin``/``vmax``. Pass the run's ``map_range`` so that every image of a run
  uses the same scale: a normal image then stays blue instead of having its noise stretched to red.
  Without them the map's own min/max is used (fine for a one-off picture, not for comparing images).
* Predicted regions are ``map >= pixel_threshold`` (same ``>=`` as the image threshold in evaluation).
* Pictures for the UI are built at display size (``DISPLAY_MAX_SIDE``): a 1024² photo becomes 512², which is
  what a card shows anyway, and contour thickness is then in screen pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.data.images import to_png_bytes  # noqa: F401  (re-exported: pages encode pictures from here)

GT_COLOUR = (0, 255, 0)  # green: the ground-truth defect
PRED_COLOUR = (255, 0, 255)  # magenta: not in the JET scale, so it stays visible on any heat colour
DISPLAY_MAX_SIDE = 512


# ---------------------------------------------------------------------------------------------- basics


def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxW gray or HxWx3 RGB uint8 → contiguous HxWx3 uint8 (a copy is not guaranteed)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def display_size(height: int, width: int, max_side: int | None = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """(height, width) scaled down so the longer side is at most ``max_side``; never scaled up."""
    if not max_side or max(height, width) <= max_side:
        return int(height), int(width)
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_display(image: np.ndarray, max_side: int | None = DISPLAY_MAX_SIDE) -> np.ndarray:
    """Downscale (area interpolation: no aliasing on fine textures) so the longer side is ≤ ``max_side``."""
    image = as_rgb(image)
    h, w = display_size(*image.shape[:2], max_side)
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def resize_map(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Float32 map resized to (height, width) with bilinear interpolation."""
    m = _as_map(anomaly_map)
    h, w = int(shape[0]), int(shape[1])
    if m.shape == (h, w):
        return m
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask resized to (height, width) nearest-neighbour, so it stays binary."""
    m = np.asarray(mask)
    m = m[0] if m.ndim == 3 and m.shape[0] == 1 else m
    m = m.astype(bool)
    h, w = int(shape[0]), int(shape[1])
    if m.shape == (h, w):
        return m
    return cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _as_map(anomaly_map: np.ndarray) -> np.ndarray:
    m = np.asarray(anomaly_map, dtype=np.float32)
    m = m.reshape(m.shape[-2:]) if m.ndim > 2 and int(np.prod(m.shape[:-2])) == 1 else m  # (1,H,W), (1,1,H,W)
    if m.ndim != 2:
        raise ValueError(f"expected an HxW anomaly map, got shape {np.asarray(anomaly_map).shape}")
    return np.nan_to_num(m, nan=0.0, posinf=np.finfo(np.float32).max, neginf=np.finfo(np.float32).min)


def _range(m: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    lo = float(m.min()) if vmin is None else float(vmin)
    hi = float(m.max()) if vmax is None else float(vmax)
    return lo, hi


# ---------------------------------------------------------------------------------------------- pictures


def colorize(
    anomaly_map: np.ndarray, vmin: float | None = None, vmax: float | None = None, colormap: int = cv2.COLORMAP_JET
) -> np.ndarray:
    """Map values → RGB colours: ``vmin`` and below is the scale's low end, ``vmax`` and above its high end.

    With ``vmax <= vmin`` (a flat scale) everything at or below ``vmin`` is low and anything above is high.
    """
    m = _as_map(anomaly_map)
    lo, hi = _range(m, vmin, vmax)
    unit = np.clip((m - lo) / (hi - lo), 0.0, 1.0) if hi > lo else (m > lo).astype(np.float32)
    grey = np.round(unit * 255.0).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(grey, colormap)[..., ::-1])  # OpenCV gives BGR


def overlay(
    image_rgb: np.ndarray,
    anomaly_map: np.ndarray,
    opacity: float = 0.5,
    vmin: float | None = None,
    vmax: float | None = None,
    colormap: int = cv2.COLORMAP_JET,
) -> np.ndarray:
    """The heat colours blended over the photo (``opacity`` 0 = photo only, 1 = colours only), photo size."""
    image = as_rgb(image_rgb)
    opacity = float(np.clip(opacity, 0.0, 1.0))
    heat = colorize(resize_map(anomaly_map, image.shape[:2]), vmin, vmax, colormap)
    return cv2.addWeighted(image, 1.0 - opacity, heat, opacity, 0.0)


def predicted_mask(anomaly_map: np.ndarray, pixel_threshold: float | None) -> np.ndarray:
    """Pixels the model calls defective: ``map >= pixel_threshold`` (all False without a threshold)."""
    m = _as_map(anomaly_map)
    if pixel_threshold is None:
        return np.zeros(m.shape, dtype=bool)
    return m >= float(pixel_threshold)


def default_thickness(height: int, width: int) -> int:
    return max(1, round(min(height, width) / 200))  # ~2 px on a 512² card, 1 px on thumbnails


def draw_contours(
    image_rgb: np.ndarray, mask_bool: np.ndarray, colour: tuple[int, int, int] = GT_COLOUR, thickness: int | None = None
) -> np.ndarray:
    """A copy of the image with the outline of ``mask_bool`` (resized nearest to the image) drawn on it.

    Holes get their own outline (RETR_LIST), so a ring-shaped defect shows as a ring.
    """
    image = as_rgb(image_rgb).copy()
    mask = resize_mask(mask_bool, image.shape[:2])
    if not mask.any():
        return image
    thickness = default_thickness(*image.shape[:2]) if thickness is None else int(thickness)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(image, contours, -1, tuple(int(c) for c in colour), thickness)
    return image


def compose(
    image: np.ndarray | None,
    anomaly_map: np.ndarray,
    gt_mask: np.ndarray | None = None,
    pixel_threshold: float | None = None,
    opacity: float = 0.5,
    vmin: float | None = None,
    vmax: float | None = None,
    max_side: int | None = DISPLAY_MAX_SIDE,
    thickness: int | None = None,
) -> np.ndarray:
    """The card picture: photo + heat overlay + ground-truth outline (green) + predicted outline (magenta).

    Built at display size (the photo downscaled to ``max_side``). The predicted outline is taken from the
    map *after* bilinear upsampling, so it is smooth rather than blocky at model resolution. Without a photo
    (e.g. the test image was moved) the colour map alone is shown, at the map's size.
    """
    if image is None:
        m = _as_map(anomaly_map)
        canvas = colorize(m, vmin, vmax)
        h, w = display_size(*m.shape, max_side)
        canvas = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != m.shape else canvas
    else:
        photo = fit_display(image, max_side)
        canvas = overlay(photo, anomaly_map, opacity, vmin, vmax)
    shape = canvas.shape[:2]
    if gt_mask is not None:
        canvas = draw_contours(canvas, gt_mask, GT_COLOUR, thickness)
    if pixel_threshold is not None:
        canvas = draw_contours(
            canvas, predicted_mask(resize_map(anomaly_map, shape), pixel_threshold), PRED_COLOUR, thickness
        )
    return canvas


def side_by_side(*images: np.ndarray, gap: int = 8, background: int = 255) -> np.ndarray:
    """Images in one row, each scaled to the first one's height, separated by ``gap`` background pixels."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    rows = [as_rgb(im) for im in images]
    height = rows[0].shape[0]
    parts: list[np.ndarray] = []
    for i, im in enumerate(rows):
        if im.shape[0] != height:
            width = max(1, round(im.shape[1] * height / im.shape[0]))
            interp = cv2.INTER_AREA if im.shape[0] > height else cv2.INTER_LINEAR
            im = cv2.resize(im, (width, height), interpolation=interp)
        if i and gap:
            parts.append(np.full((height, gap, 3), background, dtype=np.uint8))
        parts.append(im)
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def colorbar(width: int = 256, height: int = 12, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """A horizontal legend strip of the colour scale, low (left) to high (right)."""
    ramp = np.linspace(0.0, 1.0, max(2, int(width)), dtype=np.float32)[None, :].repeat(max(1, int(height)), 0)
    return colorize(ramp, 0.0, 1.0, colormap)
