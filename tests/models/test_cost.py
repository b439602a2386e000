"""What a run costs (core.models.cost): durations as a person reads them, and the estimate of a model described by
its reference-machine costs, which grows with the data, the epochs, the image size and a slower machine."""

from __future__ import annotations

import pytest

from core.models.cost import RUN_OVERHEAD_S, TORCH_BASE_MB, DatasetProfile, estimate_from_cost, fmt_duration
from core.models.registry import Cost

COST = Cost(train_s=0.1, score_s=0.05, fit_mb=2.0, fixed_mb=300)
GRID = DatasetProfile(n_train=200, n_test=80, megapixels=1.0)


def test_durations_read_as_seconds_minutes_or_hours():
    assert [fmt_duration(s) for s in (0.4, 12, 59.6, 185, 3599, 3720, None, -5)] == [
        "0 s",
        "12 s",
        "1 min 00 s",
        "3 min 05 s",
        "59 min 59 s",
        "1 h 02 min",
        "–",  # not known
        "0 s",
    ]


def test_an_estimate_is_the_overhead_plus_the_fit_plus_every_phase_after_it():
    est = estimate_from_cost({"image_size": 256}, GRID, 1.0, COST)
    after_fit = sum(v for k, v in est.parts.items() if k not in ("training", "feature extraction"))
    assert est.seconds == pytest.approx(RUN_OVERHEAD_S + est.fit_seconds + after_fit)
    assert "feature extraction" in est.parts  # one pass: no "training" for a model without epochs
    assert est.peak_mb == pytest.approx(TORCH_BASE_MB + 300 + 2.0 * 200)
    assert est.summary().startswith("Expected: about ") and est.summary().endswith(" GB.")


def test_more_data_more_epochs_bigger_images_and_a_slower_machine_each_cost_more():
    base = estimate_from_cost({"image_size": 256}, GRID, 1.0, COST)
    more_data = estimate_from_cost({"image_size": 256}, DatasetProfile(400, 80, 1.0), 1.0, COST)
    epochs = estimate_from_cost({"image_size": 256}, GRID, 1.0, COST, epochs=10)
    bigger = estimate_from_cost({"image_size": 512}, GRID, 1.0, COST)
    slower = estimate_from_cost({"image_size": 256}, GRID, 2.0, COST)

    assert more_data.fit_seconds > base.fit_seconds and more_data.peak_mb > base.peak_mb
    assert epochs.parts["training"] > 9 * base.parts["feature extraction"] and epochs.facts["epochs"] == 10
    assert bigger.seconds > base.seconds and bigger.peak_mb > base.peak_mb
    assert slower.seconds == pytest.approx(2 * base.seconds)  # every part is time on this machine
    assert slower.peak_mb == base.peak_mb  # a slower machine needs no more memory


def test_a_heavier_backbone_costs_more_time_but_no_more_memory_than_lite0():
    lite0 = estimate_from_cost({"image_size": 256, "backbone": "tf_efficientnet_lite0"}, GRID, 1.0, COST)
    lite2 = estimate_from_cost({"image_size": 256, "backbone": "tf_efficientnet_lite2"}, GRID, 1.0, COST)
    mobilenet = estimate_from_cost({"image_size": 256, "backbone": "mobilenetv2_100"}, GRID, 1.0, COST)
    assert lite2.fit_seconds > lite0.fit_seconds > mobilenet.fit_seconds
    assert lite2.peak_mb == lite0.peak_mb == mobilenet.peak_mb
    assert estimate_from_cost({"image_size": 256, "backbone": "???"}, GRID, 1.0, COST).seconds == lite0.seconds
