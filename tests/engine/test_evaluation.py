"""Evaluation from stored per-image records: metrics, threshold views, curves, averaging."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.engine.evaluation import (
    PIXEL_KEYS,
    average_metrics,
    curves,
    evaluate,
    image_metrics,
    pixel_metrics,
    threshold_view,
    zero_escape_threshold,
)
from core.errors import WorkbenchError

# A small test set worked out by hand.
#   normal scores:    0.1 0.2 0.3 0.4 0.5
#   anomalous scores: 0.35 (scratch), 0.6 (crack), 0.9 (crack)
SCORES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.35, 0.6, 0.9]
LABELS = [0, 0, 0, 0, 0, 1, 1, 1]
TYPES = ["good"] * 5 + ["scratch", "crack", "crack"]


def test_perfect_separation_gives_auroc_1_f1_1_and_no_overkill():
    m = image_metrics([1.0, 2.0, 3.0, 10.0, 11.0], [0, 0, 0, 1, 1], ["good"] * 3 + ["crack"] * 2)
    assert m["image_auroc"] == 1.0
    assert m["image_aupr"] == 1.0
    assert m["image_f1"] == 1.0
    assert m["image_threshold"] == 10.0  # the adaptive threshold sits on the lowest anomalous score
    assert m["fpr_at_full_recall"] == 0.0
    assert m["per_defect"] == {"crack": {"n": 2, "detected": 2, "recall": 1.0}}


def test_large_raw_scores_are_not_squashed_by_a_sigmoid():
    # torchmetrics would sigmoid these to 1.0 and report AUROC 0.5; we must still see 1.0.
    m = image_metrics([40.0, 41.0, 50.0, 51.0], [0, 0, 1, 1], ["good", "good", "a", "a"])
    assert m["image_auroc"] == 1.0
    assert m["image_aupr"] == 1.0


def test_hand_computed_example():
    m = image_metrics(SCORES, LABELS, TYPES)
    # Pairs (anomalous > normal): 0.35 beats 3 of 5, 0.6 and 0.9 beat all 5 -> 13/15.
    assert m["image_auroc"] == pytest.approx(13 / 15, abs=1e-6)
    # Catching every anomaly needs threshold 0.35, which also flags normals 0.4 and 0.5: 2/5.
    assert m["zero_escape_threshold"] == 0.35
    assert m["fpr_at_full_recall"] == pytest.approx(0.4)
    # Best F1: at 0.6 -> tp 2, fp 0, fn 1 -> F1 0.8 (at 0.35 it is only 0.75).
    assert m["image_threshold"] == 0.6
    assert m["image_f1"] == pytest.approx(0.8, abs=1e-6)
    assert m["n_normal"] == 5 and m["n_anomalous"] == 3
    assert m["per_defect"] == {
        "crack": {"n": 2, "detected": 2, "recall": 1.0},
        "scratch": {"n": 1, "detected": 0, "recall": 0.0},
    }
    assert m["notes"] == []


def test_results_are_plain_json():
    result = evaluate(SCORES, LABELS, TYPES)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert all(result[k] is None for k in PIXEL_KEYS)


def test_threshold_view_counts_and_rates():
    v = threshold_view(SCORES, LABELS, TYPES, 0.35)
    assert (v["tp"], v["fp"], v["tn"], v["fn"]) == (3, 2, 3, 0)
    assert v["escapes"] == 0
    assert v["recall"] == 1.0
    assert v["fpr"] == pytest.approx(0.4)
    assert v["precision"] == pytest.approx(0.6)
    assert v["f1"] == pytest.approx(0.75)
    assert v["per_defect"]["scratch"] == {"n": 1, "detected": 1, "recall": 1.0}


def test_threshold_view_at_adaptive_threshold_matches_image_f1():
    m = image_metrics(SCORES, LABELS, TYPES)
    v = threshold_view(SCORES, LABELS, TYPES, m["image_threshold"])
    assert v["f1"] == pytest.approx(m["image_f1"], abs=1e-6)
    assert v["per_defect"] == m["per_defect"]


def test_threshold_view_counts_sum_to_n_and_move_monotonically():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=200) + np.repeat([0.0, 1.5], 100)
    labels = np.repeat([0, 1], 100)
    types = ["good"] * 100 + ["a", "b"] * 50
    previous = None
    for t in np.linspace(scores.min() - 1, scores.max() + 1, 25):
        v = threshold_view(scores, labels, types, t)
        assert v["tp"] + v["fp"] + v["tn"] + v["fn"] == 200
        if previous is not None:  # raising the threshold flags fewer images
            assert v["tp"] <= previous["tp"] and v["fp"] <= previous["fp"]
            assert v["fn"] >= previous["fn"] and v["tn"] >= previous["tn"]
        previous = v
    assert previous["tp"] == previous["fp"] == 0
    assert previous["precision"] is None  # nothing flagged: undefined, not 0


def test_zero_escape_threshold_is_the_lowest_anomalous_score():
    assert zero_escape_threshold(SCORES, LABELS) == 0.35
    assert zero_escape_threshold([0.1, 0.2], [0, 0]) is None
    assert threshold_view(SCORES, LABELS, TYPES, 0.35)["escapes"] == 0
    assert threshold_view(SCORES, LABELS, TYPES, 0.36)["escapes"] == 1


def test_one_class_gives_none_and_a_note_not_a_crash():
    m = image_metrics([0.1, 0.2, 0.3], [0, 0, 0], ["good"] * 3)
    assert m["image_auroc"] is None and m["image_f1"] is None and m["image_threshold"] is None
    assert m["fpr_at_full_recall"] is None
    assert m["notes"] and "anomalous" in m["notes"][0]
    m = image_metrics([0.1, 0.2], [1, 1], ["a", "b"])
    assert m["image_auroc"] is None and m["notes"]
    assert m["zero_escape_threshold"] == 0.1
    assert m["per_defect"]["a"] == {"n": 1, "detected": None, "recall": None}


@pytest.mark.parametrize(
    ("scores", "labels", "types", "message"),
    [
        ([], [], [], "empty"),
        ([0.1, 0.2], [0], ["good", "good"], "must match"),
        ([0.1, 0.2], [0, 1], ["good"], "must match"),
        ([0.1, float("nan")], [0, 1], ["good", "a"], "NaN"),
        ([0.1, 0.2], [0, 2], ["good", "a"], "labels"),
    ],
)
def test_bad_inputs_raise_workbench_error(scores, labels, types, message):
    with pytest.raises(WorkbenchError, match=message):
        evaluate(scores, labels, types)


def test_curves_have_the_right_endpoints_and_length():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=1000) + np.repeat([0.0, 1.0], 500)
    labels = np.repeat([0, 1], 500)
    c = curves(scores, labels, max_points=50)
    roc, pr = c["roc"], c["pr"]
    assert all(len(roc[k]) <= 50 for k in roc) and len(set(map(len, roc.values()))) == 1
    assert all(len(pr[k]) <= 50 for k in pr) and len(set(map(len, pr.values()))) == 1
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    assert roc["thresholds"][0] > max(scores)  # "flag nothing" end
    assert roc["thresholds"][-1] == pytest.approx(min(scores))
    assert pr["recall"][0] == 1.0 and pr["recall"][-1] == 0.0
    assert pr["precision"][0] == pytest.approx(0.5)  # everything flagged: precision = prevalence


def test_curves_threshold_points_agree_with_threshold_view():
    c = curves(SCORES, LABELS)
    for fpr, tpr, t in zip(c["roc"]["fpr"], c["roc"]["tpr"], c["roc"]["thresholds"], strict=True):
        v = threshold_view(SCORES, LABELS, TYPES, t)
        assert (v["fpr"], v["recall"]) == (pytest.approx(fpr, abs=1e-6), pytest.approx(tpr, abs=1e-6))


def test_curves_with_one_class():
    c = curves([0.1, 0.2], [0, 0])
    assert c["roc"] is None and c["pr"] is None and c["notes"]


def _synthetic_masks(n: int = 8, size: int = 64) -> np.ndarray:
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n // 2):  # half the images are defective, each with one square defect
        masks[i, 10 + i : 20 + 2 * i, 15:30] = 1
    return masks


def test_pixel_metrics_map_equal_to_mask_is_perfect():
    masks = _synthetic_masks()
    p = pixel_metrics(masks.astype(np.float32), masks)
    assert p["pixel_auroc"] == 1.0
    assert p["pixel_f1"] == 1.0
    assert p["aupro"] == pytest.approx(1.0, abs=1e-3)
    assert p["pixel_subsampled"] is False
    assert p["aupro_resolution"] == [64, 64]


def test_pixel_metrics_random_maps_are_near_chance():
    masks = _synthetic_masks()
    maps = np.random.default_rng(0).random(masks.shape).astype(np.float32)
    p = pixel_metrics(maps, masks)
    assert p["pixel_auroc"] == pytest.approx(0.5, abs=0.05)
    # Random maps: PRO grows about as fast as FPR, so the normalised area up to FPR 0.3 is ~0.15.
    assert p["aupro"] == pytest.approx(0.15, abs=0.05)


def test_pixel_metrics_subsample_and_downsample_large_inputs():
    masks = _synthetic_masks(n=8, size=64)
    maps = masks.astype(np.float32) + 0.1 * np.random.default_rng(0).random(masks.shape, dtype=np.float32)
    p = pixel_metrics(maps, masks * 255, max_pixels=5_000, aupro_max_pixels=8_000)  # 0/255 masks count
    assert p["pixel_subsampled"] is True and p["pixel_count"] == 5_000
    assert p["pixel_auroc"] == 1.0
    assert p["aupro_resolution"] == [31, 31]
    assert p["aupro"] > 0.95
    assert pixel_metrics(maps, masks, max_pixels=5_000, aupro_max_pixels=8_000) == p  # deterministic


def test_pixel_metrics_without_defect_pixels_are_none():
    masks = np.zeros((2, 16, 16), dtype=np.uint8)
    p = pixel_metrics(np.random.default_rng(0).random(masks.shape), masks)
    assert p["pixel_auroc"] is None and p["aupro"] is None and p["notes"]


def test_evaluate_merges_image_and_pixel_metrics():
    masks = _synthetic_masks()
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    types = ["a", "a", "b", "b"] + ["good"] * 4
    result = evaluate([0.9, 0.8, 0.7, 0.6, 0.1, 0.2, 0.3, 0.4], labels, types, masks.astype(np.float32), masks)
    assert result["image_auroc"] == 1.0 and result["pixel_auroc"] == 1.0
    with pytest.raises(WorkbenchError, match="maps"):
        evaluate([0.9, 0.1], [1, 0], ["a", "good"], masks.astype(np.float32), masks)
    with pytest.raises(WorkbenchError, match="shape"):
        pixel_metrics(masks.astype(np.float32), masks[:, :32])


def test_average_metrics_ignores_none_and_non_numeric():
    avg = average_metrics(
        [
            {"image_auroc": 0.8, "aupro": None, "pixel_subsampled": True, "per_defect": {}, "notes": []},
            {"image_auroc": 1.0, "aupro": 0.6},
            {"image_auroc": None, "aupro": 0.8},
        ]
    )
    assert avg == {"image_auroc": pytest.approx(0.9), "aupro": pytest.approx(0.7), "n_categories": 3}
