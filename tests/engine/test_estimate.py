"""Time and memory before a run starts (core.engine.estimate): a slower machine gets a longer estimate and a long run
is called long. Each model's own estimate against its measured runs: tests/models/ (PatchCore: test_patchcore.py)."""

from __future__ import annotations

import pytest

from core.engine import estimate
from core.engine.estimate import DatasetProfile
from tests.models.test_patchcore import GRID_TILES, patchcore_fit


def test_a_slower_machine_gets_a_longer_estimate_and_a_long_run_a_warning(tmp_path, monkeypatch):
    assert patchcore_fit(1000, slow=2.0).seconds == pytest.approx(2 * patchcore_fit(1000).seconds, rel=0.01)
    monkeypatch.setattr(estimate, "speed_factor", lambda: 20.0)  # a machine 20x slower than the reference
    monkeypatch.setattr(estimate, "profile", lambda spec: DatasetProfile(2000, 561, GRID_TILES))
    est = estimate.estimate_run("patchcore", {"max_bank_size": 0}, spec=None)
    assert est.warnings and "This run is long" in est.warnings[0]
    assert "Expected: about" in est.summary() and "coreset selection" in est.summary()


def test_the_launch_form_is_told_which_size_the_data_got_and_what_each_size_costs(artifacts, monkeypatch):
    from core.data.datasets import demo

    monkeypatch.setattr(estimate, "speed_factor", lambda: 1.0)
    monkeypatch.setattr(estimate, "profile", lambda spec: DatasetProfile(264, 78, 1024 * 1024 / 1e6))
    options = estimate.size_options("patchcore", {}, demo(n_train=4, n_test_good=2, n_test_per_defect=1, size=64))
    assert options.choice.params["image_size"] == 512
    assert set(options.estimates) == {256, 512}
    assert options.estimates[512].fit_seconds > options.estimates[256].fit_seconds
    assert "512 px (chosen)" in options.summary() and "256 px: about" in options.summary()
    assert estimate.size_options("patchcore", {"image_size": 256}, None) is None  # a size given: nothing to say
