"""Heatmap pictures (core.views.overlays) and the viewer's outcome/filter/sort/upload logic (core.views.viewer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data import images
from core.engine.inference import Prediction
from core.views import overlays, viewer


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


# ---- viewer: outcomes, filters, sorting, paging -----------------------------------------------------------


@pytest.fixture
def records() -> pd.DataFrame:
    rows = [  # (label, defect type, score); threshold 0.5 in the tests
        (0, "good", 0.1),
        (0, "good", 0.7),
        (1, "crack", 0.9),
        (1, "crack", 0.3),
        (1, "spot", 0.6),
        (0, "good", 0.5),
    ]
    return pd.DataFrame(
        [
            {
                "index": i,
                "path": f"/data/test/{d}/{i:03d}.png",
                "label": lab,
                "defect_type": d,
                "mask_path": None,
                "score": s,
                "pred_label": int(s >= 0.5),
            }
            for i, (lab, d, s) in enumerate(rows)
        ]
    )


def test_outcomes_at_a_threshold(records):
    df = viewer.with_outcomes(records, 0.5)
    assert df["outcome"].tolist() == ["TN", "FP", "TP", "FN", "TP", "FP"]  # score == threshold is flagged
    assert viewer.with_outcomes(records, None)["outcome"].tolist() == [None] * 6


def test_filter_by_label_defect_type_and_outcome(records):
    df = viewer.with_outcomes(records, 0.5)
    assert viewer.filter_records(df, "anomalous")["label"].eq(1).all()
    assert len(viewer.filter_records(df, "normal")) == 3
    assert viewer.filter_records(df, defect_types=["crack"])["index"].tolist() == [2, 3]
    assert viewer.filter_records(df, outcomes=["FP"])["index"].tolist() == [1, 5]
    assert viewer.filter_records(df, "anomalous", outcomes=["FN", "TP"], defect_types=["spot"])["index"].tolist() == [4]
    assert len(viewer.filter_records(df, "all", [], [])) == 6  # empty selections mean "any"


def test_sort_by_score_both_ways_with_ties_in_test_set_order(records):
    assert viewer.sort_records(records, "desc")["score"].tolist() == [0.9, 0.7, 0.6, 0.5, 0.3, 0.1]
    assert viewer.sort_records(records, "asc")["index"].tolist() == [0, 3, 5, 4, 1, 2]
    assert viewer.sort_records(records.iloc[::-1], "index")["index"].tolist() == list(range(6))
    tied = records.assign(score=1.0)
    assert viewer.sort_records(tied, "desc")["index"].tolist() == list(range(6))


def test_select_is_filter_then_sort(records):
    view = viewer.select(records, 0.5, label="anomalous", order="desc")
    assert view["index"].tolist() == [2, 4, 3] and view["outcome"].tolist() == ["TP", "TP", "FN"]


def test_paging_clamps_to_existing_pages(records):
    rows, page = viewer.paginate(records, 2, 4)
    assert page == 2 and rows["index"].tolist() == [4, 5]
    assert viewer.paginate(records, 99, 4)[1] == 2 and viewer.paginate(records, 0, 4)[1] == 1
    assert viewer.n_pages(0, 12) == 1 and viewer.n_pages(13, 12) == 2


def test_runs_are_comparable_only_on_the_same_test_images(records):
    from types import SimpleNamespace as Run

    demo = {"kind": "demo", "root": "/a", "category": "demo", "max_train_images": None}
    a = Run(id="a", dataset=demo)
    b = Run(id="b", dataset={**demo, "max_train_images": 5})  # fewer training images, same test set
    c = Run(id="c", dataset={**demo, "category": "grid"})
    assert [r.id for r in viewer.comparable_runs(a, [a, b, c])] == ["b"]
    assert viewer.find_by_path(records, "/data/test/spot/004.png") == 4
    assert viewer.find_by_path(records, "/elsewhere/x.png") is None


def test_missing_test_image_gives_a_message_not_an_exception(tmp_path):
    image, problem = viewer.load_display_image(str(tmp_path / "gone.png"))
    assert image is None and "not found" in problem


# ---- viewer: uploads ---------------------------------------------------------------------------------------


class FakeModel:
    """Scores an image by its mean brightness; counts how many images it was asked to score."""

    image_threshold = 0.5

    def __init__(self):
        self.scored = 0

    def predict(self, sources, names):
        out = []
        for name, data in zip(names, sources, strict=False):
            try:
                rgb = images.read_image(data, name=name)
            except images.ImageError as exc:
                out.append(Prediction(name=name, error=str(exc)))
                continue
            self.scored += 1
            score = float(rgb.mean() / 255)
            out.append(Prediction(name, score, score >= 0.5, np.full((8, 8), score, np.float32), rgb))
        return out


def png(value: int, size: int = 32) -> bytes:
    return overlays.to_png_bytes(grey(size, size, value))


def test_uploads_bad_file_gets_an_error_and_the_rest_are_scored():
    preds = viewer.score_uploads(
        FakeModel(), [("dark.png", png(10)), ("junk.png", b"not an image"), ("bright.png", png(250))]
    )
    assert [p.name for p in preds] == ["dark.png", "junk.png", "bright.png"]  # upload order kept
    assert preds[0].is_anomalous is False and preds[2].is_anomalous is True
    assert preds[1].score is None and "junk.png" in preds[1].error


def test_uploads_are_scored_once_and_big_ones_kept_at_display_size():
    model, cache = FakeModel(), {}
    files = [("a.png", png(10, size=3000)), ("b.png", png(250))]
    first = viewer.score_uploads(model, files, cache)
    again = viewer.score_uploads(model, files, cache)
    assert model.scored == 2 and again == first  # a rerun (slider move) does not rescore
    assert max(first[0].image.shape[:2]) == viewer.UPLOAD_KEEP_MAX_SIDE


def test_uploads_table_and_csv():
    preds = viewer.score_uploads(FakeModel(), [("ok.png", png(250)), ("bad.png", b"")])
    table = viewer.uploads_table(preds, threshold=0.5)
    assert table.columns.tolist()[:4] == ["name", "score", "verdict", "error"]
    assert table.loc[0, "verdict"] == "ANOMALOUS" and table.loc[0, "error"] == ""
    assert table.loc[1, "verdict"] == "" and "empty" in table.loc[1, "error"]
    back = pd.read_csv(__import__("io").BytesIO(viewer.table_csv(table)))
    assert back["name"].tolist() == ["ok.png", "bad.png"] and back.loc[0, "score"] == pytest.approx(250 / 255)
