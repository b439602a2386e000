"""The image size that follows the data (core.models.sizing): PatchCore left at image_size 0 scores a high-resolution
set at 512 px with a smaller bank and a low-resolution set at 256 px, and says why; a size the user gives wins."""

from __future__ import annotations

import pytest

from core import models
from core.errors import WorkbenchError
from core.models import sizing
from core.models.cost import DatasetProfile

GRID = DatasetProfile(n_train=264, n_test=78, megapixels=1024 * 1024 / 1e6)  # MVTec grid's 1024² photos
SMALL = DatasetProfile(n_train=761, n_test=583, megapixels=256 * 256 / 1e6)  # a set of 256² images
MIDDLE = DatasetProfile(n_train=100, n_test=40, megapixels=600 * 600 / 1e6)


def test_a_1024_pixel_set_is_scored_at_512_with_a_smaller_bank_and_a_256_pixel_set_at_256():
    high = sizing.patchcore_choice(GRID)
    assert high.params == {"image_size": 512, "max_bank_size": sizing.HIGH_RES_BANK}
    assert "1024×1024" in high.why and "1.000 / 0.993" in high.why

    low = sizing.patchcore_choice(SMALL)
    assert low.params == {"image_size": 256} and "adds no detail" in low.why
    middle = sizing.patchcore_choice(MIDDLE)
    assert middle.params == {"image_size": 256} and "sweep over image_size" in middle.why

    assert sizing.patchcore_choice(None).params == {"image_size": 256}  # nothing known yet: the data-free size


def test_patchcore_follows_the_data_by_default_and_a_size_or_a_cap_the_user_gives_wins():
    assert models.resolve_params("patchcore", {})["image_size"] == sizing.AUTO

    params, choice = models.resolve_for_data("patchcore", {}, GRID)
    assert (params["image_size"], params["max_bank_size"]) == (512, 8_000) and choice is not None
    params, _ = models.resolve_for_data("patchcore", {"max_bank_size": 3_000}, GRID)
    assert (params["image_size"], params["max_bank_size"]) == (512, 3_000)  # the user's cap is kept
    params, choice = models.resolve_for_data("patchcore", {"image_size": 384}, GRID)
    assert params["image_size"] == 384 and params["max_bank_size"] == models.MAX_BANK_SIZE and choice is None


def test_models_without_a_rule_that_held_across_backbones_keep_256_and_refuse_0():
    for name in ("padim", "dfm"):  # PaDiM at 512 px on grid: +0.006 with Lite0, -0.034 with MobileNetV2
        assert models.resolve_for_data(name, {}, GRID)[0]["image_size"] == 256
        with pytest.raises(WorkbenchError, match="image_size"):
            models.resolve_params(name, {"image_size": 0})


def test_a_model_built_before_the_data_is_known_uses_the_data_free_size(artifacts):
    module = models.create_model("patchcore", {"backbone": "tf_efficientnet_lite0"})
    assert module.pre_processor.transform.transforms[0].size == [256, 256]


def test_a_high_resolution_set_too_large_for_memory_at_512_stays_at_256_and_says_how_much_it_would_need():
    choice = sizing.patchcore_choice(
        GRID, peak_mb=lambda p: 6_000.0 if p["image_size"] == 512 else 0.0, memory_mb=4_096
    )
    assert choice.params == {"image_size": 256}
    assert "about 5.9 GB" in choice.why and "4.0 GB planned" in choice.why and "image_size=512" in choice.why

    # through the registry, with PatchCore's own estimate: 4,000 photos of 1024² at 512 px would hold ~16 GB
    many = DatasetProfile(n_train=4_000, n_test=500, megapixels=GRID.megapixels)
    p, _ = models.resolve_for_data("patchcore", {"backbone": "tf_efficientnet_lite0"}, many)
    assert p["image_size"] == (256 if sizing.memory_budget_mb() < 16_000 else 512)
