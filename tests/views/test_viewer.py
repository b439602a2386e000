"""The heatmap viewer's logic (core.views.viewer): outcomes at a threshold, filters, sorting, paging, comparable
runs, and scoring uploads once with a verdict or an error per file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data import images
from core.engine.inference import Prediction
from core.views import overlays, viewer


def grey(h: int, w: int, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


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
