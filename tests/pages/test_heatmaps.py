"""The Heatmap viewer page, driven like a user would with Streamlit's AppTest.

The page is opened through app.py + switch_page, as in the real app: ``st.navigation`` must have registered
the other pages for links like "Go to Training runs" to resolve. AppTest 1.67 supports ``file_uploader``, so
uploads go through the real widget.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT, settings
from core.store.artifacts import RunArtifacts
from core.views import viewer

PAGE = "pages/heatmaps.py"


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")  # the app shell must not start a background worker here


def open_viewer(run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    at.switch_page(PAGE).run()
    if run_id:
        at.selectbox(key="hm_run").set_value(run_id).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Heatmap viewer"
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def images_tab(at: AppTest):
    return at.tabs[0]  # "Test images"; the others: "Compare two runs", "Score your own images"


def cards(at: AppTest) -> list[str]:
    """The 'Truth: …' line of every test-image card."""
    return [c for c in texts(images_tab(at).caption) if c.startswith("Truth:")]


def card_lines(at: AppTest) -> list[str]:
    """The 'score … / Verdict …' line of every test-image card."""
    return [m for m in texts(images_tab(at).markdown) if m.startswith("score **")]


def records(run_id: str):
    return RunArtifacts(settings().run_dir(run_id)).records


def test_without_runs_the_page_points_to_training(artifacts):
    at = open_viewer()
    assert not at.error
    assert any("No finished runs" in m for m in texts(at.info))
    assert any(link.proto.label == "Go to Training runs" for link in at.get("page_link"))


def test_shows_a_card_per_test_image_with_score_verdict_and_truth(demo_runs):
    patchcore, efficientad = demo_runs
    at = open_viewer(efficientad)
    assert not at.error
    assert any("UNTRAINED" in w for w in texts(at.warning))  # the run's caveat is shown
    n = len(records(efficientad))
    assert len(cards(at)) == min(n, 12)  # first page of the grid
    assert any(f"of {n} images" in c for c in texts(at.caption))
    assert len(card_lines(at)) == len(cards(at)) and all("Verdict: **" in m for m in card_lines(at))


def test_filtering_to_anomalous_shows_only_anomalous_cards(demo_runs):
    patchcore, _ = demo_runs
    at = open_viewer(patchcore)
    at.radio(key="hm_label").set_value("anomalous").run()
    shown = cards(at)
    assert shown and all(c.startswith("Truth: anomalous") for c in shown)
    assert len(shown) == int((records(patchcore)["label"] == 1).sum())


def test_outcome_filter_and_sort_by_score(demo_runs):
    patchcore, _ = demo_runs
    at = open_viewer(patchcore)
    at.selectbox(key="hm_sort").set_value("asc").run()
    scores = [float(m.split("**")[1]) for m in card_lines(at)]
    assert scores and scores == sorted(scores)

    threshold = viewer.display_settings(settings().run_dir(patchcore)).image_threshold
    counts = viewer.with_outcomes(records(patchcore), threshold)["outcome"].value_counts()
    outcome = counts.index[0]  # whichever outcome this demo run has most of
    at.multiselect(key="hm_outcomes").set_value([outcome]).run()
    assert len(card_lines(at)) == min(int(counts[outcome]), 12)
    assert all(m.endswith(f"· **{outcome}**") for m in card_lines(at))


def test_inspect_opens_a_detail_view_with_score_against_threshold(demo_runs):
    patchcore, _ = demo_runs
    at = open_viewer(patchcore)
    next(b for b in at.button if (b.key or "").startswith("hm_inspect_")).click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert {"Anomaly score", "Verdict", "Outcome"} <= set(metrics)
    assert any("original | overlay" in cap for img in at.image for cap in img.captions)


def test_two_runs_side_by_side_on_the_same_image(demo_runs):
    patchcore, efficientad = demo_runs
    at = open_viewer(patchcore)
    assert at.selectbox(key="hm_other").value == efficientad  # the other run on the same test set
    compare = texts(at.tabs[1].markdown)
    assert sum(m.startswith("**") and patchcore in m for m in compare) == 1
    assert sum(m.startswith("**") and efficientad in m for m in compare) == 1
    assert sum("× threshold" in m and "Verdict: **" in m for m in compare) == 2  # a score and verdict each
    assert len(at.tabs[1].image) == 2


def test_upload_scores_valid_images_and_reports_bad_ones(demo_runs):
    patchcore, _ = demo_runs
    at = open_viewer(patchcore)
    good = Path(records(patchcore)["path"].iloc[0]).read_bytes()
    at.file_uploader(key="hm_upload").set_value(
        [
            ("part.png", good, "image/png"),
            ("broken.png", b"this is not an image", "image/png"),
        ]
    ).run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and "broken.png" in errors[0] and "not a readable image" in errors[0]
    upload = at.tabs[2]
    assert any("**1** of 2 image(s) scored" in m for m in texts(upload.markdown))
    assert texts(upload.caption)[-1] == "part.png" and len(upload.image) == 1  # one card: overlay, ...
    assert (
        sum(m.startswith("score **") and "Verdict: **" in m for m in texts(upload.markdown)) == 1
    )  # ... score, verdict
    assert any(b.label == "Download results (CSV)" for b in at.get("download_button"))
