"""Synthetic defects for the detection limit: controlled size and contrast, exact masks, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.defects import DEFECT_SHAPES, make_defect, paste_defect
from core.data.demo_data import make_demo_image


@pytest.fixture(scope="module")
def surface() -> np.ndarray:
    return make_demo_image("good", seed=21)[0]


@pytest.mark.parametrize("shape", DEFECT_SHAPES)
def test_the_mask_is_exactly_the_pixels_that_changed_and_nothing_else_moves(surface, shape):
    out, mask = paste_defect(surface, shape, area_fraction=0.002, contrast=0.3, seed=5)
    assert out.shape == surface.shape and out.dtype == np.uint8 and mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, (out != surface).any(axis=2))
    assert surface[~mask].tobytes() == out[~mask].tobytes()


@pytest.mark.parametrize("shape", DEFECT_SHAPES)
@pytest.mark.parametrize("area", [0.0001, 0.001, 0.02])
def test_asking_for_an_area_gives_about_that_area_from_a_few_pixels_to_two_percent(surface, shape, area):
    target = area * surface.shape[0] * surface.shape[1]
    drawn = [paste_defect(surface, shape, area, 0.5, seed=[3, i])[1].sum() for i in range(4)]
    # Spots and scratches within 20 % (a few pixels at the smallest); stains' soft edge rounds small ones up.
    low, high = (0.5, 2.5) if shape == "stain" and area < 0.001 else (0.75, 1.3)
    assert all(low * target - 2 <= d <= high * target + 2 for d in drawn), (drawn, target)


def test_a_stronger_contrast_is_a_bigger_grey_step(surface):
    steps = []
    for contrast in (0.1, 0.3, 0.6):
        out, mask = paste_defect(surface, "spot", 0.005, contrast, seed=1)
        steps.append(np.abs(out.astype(int) - surface.astype(int))[mask].max())
    assert steps[0] < steps[1] < steps[2]
    assert abs(steps[1] - 0.3 * 255) <= 2  # a hard-edged spot changes by the full step


def test_the_same_seed_gives_the_same_defect_and_another_seed_moves_it(surface):
    a = paste_defect(surface, "scratch", 0.003, 0.4, seed=[7, 1])
    b = paste_defect(surface, "scratch", 0.003, 0.4, seed=[7, 1])
    c = paste_defect(surface, "scratch", 0.003, 0.4, seed=[7, 2])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_a_scratch_is_thin_and_a_stain_has_a_soft_edge(surface):
    scratch = make_defect(surface, "scratch", 0.003, 0.5, seed=2)
    ys, xs = np.nonzero(scratch.mask)
    assert max(np.ptp(ys), np.ptp(xs)) > 10 * (scratch.area_px / max(np.ptp(ys), np.ptp(xs)))  # long and thin
    out, mask = paste_defect(surface, "stain", 0.01, 0.5, seed=2)
    change = np.abs(out.astype(int) - surface.astype(int)).max(axis=2)[mask]
    assert change.min() < 0.5 * change.max()  # fades out towards its outline


def test_big_grey_images_work_and_bad_arguments_are_refused():
    big = np.full((600, 800), 200, np.uint8)  # a grey image: becomes RGB
    out, mask = paste_defect(big, "spot", 0.001, 0.2, seed=0)
    assert out.shape == (600, 800, 3) and 400 < mask.sum() < 560
    assert out[mask].max() < 200  # a bright surface gets a dark defect
    with pytest.raises(ValueError, match="scratch"):
        paste_defect(big, "dent", 0.001, 0.2)
    with pytest.raises(ValueError, match="contrast"):
        paste_defect(big, "spot", 0.001, 0.0)
