"""Heatmap pictures (core.views.overlays): colour scale, overlay, contours, composition and PNG bytes."""

from __future__ import annotations

import numpy as np

from core.data import images
from core.views import overlays


def grey(h: int, w: int, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def square_mask(size: int, lo: int, hi: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[lo:hi, lo:hi] = True
    return mask


# ---- colour scale -----------------------------------------------------------------------------------------


def test_colorize_gives_rgb_uint8_of_the_map_size():
    out = overlays.colorize(np.random.default_rng(0).random((32, 48)).astype(np.float16), 0.0, 1.0)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8


def test_colour_scale_is_fixed_by_vmin_vmax_so_images_of_a_run_are_comparable():
    low, high = overlays.colorize(np.array([[0.0, 1.0]]), 0.0, 1.0)[0]
    assert high[0] > high[2] and low[2] > low[0]  # JET: high end red, low end blue
    # The same value gets the same colour in a quiet image and in a hot one ...
    quiet = overlays.colorize(np.array([[0.2, 0.3]]), 0.0, 1.0)
    hot = overlays.colorize(np.array([[0.3, 5.0]]), 0.0, 1.0)
    assert (quiet[0, 1] == hot[0, 0]).all()
    # ... values beyond the range clip to its ends ...
    assert (hot[0, 1] == high).all()
    assert (overlays.colorize(np.array([[-3.0]]), 0.0, 1.0)[0, 0] == low).all()
    # ... whereas without a fixed range a quiet image's noise is stretched to full red.
    assert (overlays.colorize(np.array([[0.2, 0.3]]))[0, 1] == high).all()


def test_flat_scale_does_not_divide_by_zero():
    out = overlays.colorize(np.array([[1.0, 2.0]]), 1.0, 1.0)
    assert out.shape == (1, 2, 3)


# ---- overlay ----------------------------------------------------------------------------------------------


def test_overlay_resizes_the_map_to_the_image_and_blends_by_opacity():
    image = grey(64, 96)
    amap = np.zeros((16, 16), dtype=np.float16)
    amap[:, 8:] = 1.0
    out = overlays.overlay(image, amap, opacity=0.5, vmin=0.0, vmax=1.0)
    assert out.shape == (64, 96, 3) and out.dtype == np.uint8
    assert (overlays.overlay(image, amap, opacity=0.0, vmin=0, vmax=1) == image).all()
    full = overlays.overlay(image, amap, opacity=1.0, vmin=0, vmax=1)
    assert (full == overlays.colorize(overlays.resize_map(amap, (64, 96)), 0, 1)).all()
    assert full[32, 2, 2] > full[32, 2, 0] and full[32, 93, 0] > full[32, 93, 2]  # blue left, red right


def test_bilinear_map_resize_is_smooth_and_mask_resize_stays_binary():
    amap = np.array([[0.0, 1.0]], dtype=np.float32)
    wide = overlays.resize_map(amap, (1, 8))
    assert 0.0 <= wide.min() < 0.5 < wide.max() <= 1.0 and len(np.unique(wide)) > 2
    mask = overlays.resize_mask(square_mask(8, 2, 6), (32, 32))
    assert mask.dtype == bool and mask.sum() == 16 * 16


def test_contour_is_drawn_on_the_mask_border_only():
    image = grey(64, 64)
    mask = square_mask(8, 2, 6)  # model resolution; becomes rows/cols 16..47 at 64x64
    out = overlays.draw_contours(image, mask, (0, 255, 0), thickness=1)
    green = (out == (0, 255, 0)).all(axis=2)
    assert green[16, 16:48].all() and green[47, 16:48].all() and green[16:48, 16].all()  # the border
    assert not green[30, 30] and not green[5, 5]  # not inside, not outside
    assert (image == 128).all()  # the input is not modified
    assert (overlays.draw_contours(image, np.zeros((8, 8), bool), (0, 255, 0)) == image).all()


def test_predicted_mask_uses_greater_or_equal_and_needs_a_threshold():
    amap = np.array([[0.1, 0.5, 0.9]])
    assert overlays.predicted_mask(amap, 0.5).tolist() == [[False, True, True]]
    assert not overlays.predicted_mask(amap, None).any()


def test_compose_draws_ground_truth_green_and_prediction_magenta_at_display_size():
    image = grey(1024, 1024)
    amap = np.zeros((64, 64), dtype=np.float32)
    amap[40:56, 40:56] = 1.0  # predicted defect, bottom right
    gt = square_mask(64, 8, 24)  # true defect, top left
    out = overlays.compose(image, amap, gt, pixel_threshold=0.5, opacity=0.5, vmin=0.0, vmax=1.0)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8  # 1024² is shown at 512²
    green = np.argwhere((out == overlays.GT_COLOUR).all(axis=2))
    magenta = np.argwhere((out == overlays.PRED_COLOUR).all(axis=2))
    assert len(green) and len(magenta)
    assert green.max() < 256 and magenta.min() > 256  # each outline where its region is


def test_compose_without_photo_shows_the_map_and_small_images_are_not_upscaled():
    amap = np.random.default_rng(0).random((100, 100))
    assert overlays.compose(None, amap, vmin=0, vmax=1).shape == (100, 100, 3)
    assert overlays.compose(grey(200, 300), amap).shape == (200, 300, 3)
    assert overlays.fit_display(grey(1000, 2000)).shape == (256, 512, 3)


def test_side_by_side_matches_heights_and_adds_a_gap():
    out = overlays.side_by_side(grey(100, 100), grey(50, 80, 0), gap=8)
    assert out.shape == (100, 100 + 8 + 160, 3)


def test_png_bytes_round_trip():
    picture = overlays.colorize(np.random.default_rng(1).random((20, 30)), 0, 1)
    assert (images.read_image(overlays.to_png_bytes(picture)) == picture).all()
