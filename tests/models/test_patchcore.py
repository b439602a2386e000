"""PatchCore (core.models.patchcore): its time and memory estimate follows the dataset's size the way the measured
runs do (README "Own images at scale"), and the bank-size cap keeps the coreset step linear in the data."""

from __future__ import annotations

import pytest

from core import models
from core.engine.estimate import DatasetProfile

GRID_TILES = 0.0655  # megapixels of a 256x256 tile


def patchcore_fit(n_images: int, slow: float = 1.0, **params):
    profile = DatasetProfile(n_images, 561, GRID_TILES)
    p, _ = models.resolve_for_data("patchcore", {"backbone": "tf_efficientnet_lite0", **params}, profile)
    return models.get_entry("patchcore").estimate(p, profile, slow)


# Measured by benchmarks/scaling.py on the reference machine (fit seconds, peak RSS GB); the estimate must stay
# within a factor of two of each so the launch form's warning means something.
MEASURED = [
    (100, 0.01, 20_000, 6.1, 1.49),
    (500, 0.1, 20_000, 56.5, 1.69),
    (1000, 0.1, 20_000, 108.8, 1.97),
    (1000, 0.1, 0, 336.8, 1.95),
    (2000, 0.1, 20_000, 216.4, 3.42),
]


@pytest.mark.parametrize("images,ratio,cap,fit_s,rss_gb", MEASURED)
def test_patchcore_estimate_is_within_a_factor_of_two_of_the_measured_run(images, ratio, cap, fit_s, rss_gb):
    est = patchcore_fit(images, coreset_sampling_ratio=ratio, max_bank_size=cap)
    assert fit_s / 2 <= est.fit_seconds <= fit_s * 2
    assert rss_gb / 2 <= est.peak_mb / 1024 <= rss_gb * 2


def test_the_bank_cap_keeps_the_coreset_step_from_growing_with_the_square_of_the_data():
    capped = [patchcore_fit(n).parts["coreset selection"] for n in (1000, 2000)]
    uncapped = [patchcore_fit(n, max_bank_size=0).parts["coreset selection"] for n in (1000, 2000)]
    assert uncapped[1] / uncapped[0] == pytest.approx(4, rel=0.1)  # patches x bank: both doubled
    assert capped[1] / capped[0] == pytest.approx(2, rel=0.1)  # bank fixed at the cap
    assert patchcore_fit(1000).facts["bank size"] == models.MAX_BANK_SIZE
