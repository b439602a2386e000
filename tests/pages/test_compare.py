"""The Compare models page, driven like a user would with Streamlit's AppTest through app.py's navigation.

Each test: a user action, then what must be true.
"""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT

PAGE = "pages/compare.py"


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")


def open_compare() -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=90).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def chart_titles(at: AppTest) -> list[str]:
    titles = []
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec)["layout"].get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title))
    return titles


def confusion(at: AppTest) -> list[list[int]]:
    df = next(d.value for d in at.dataframe if "predicted anomalous" in d.value.columns)
    return df.to_numpy().tolist()


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def pick_whatif_run(at: AppTest, run_id: str) -> AppTest:
    at.selectbox(key="cmp_thr_run").set_value(run_id).run()
    assert not at.exception, at.exception
    return at


def test_with_no_finished_runs_the_page_says_so_and_links_to_training(artifacts):
    at = open_compare()
    assert at.title[0].value == "Compare models"
    assert "No finished runs" in at.info[0].value
    assert any("Training runs" in link.value for link in at.page_link)
    assert not at.error


def test_opening_the_page_compares_real_results_and_a_pipeline_check_only_once_added(demo_runs):
    at = open_compare()
    # The untrained-teacher EfficientAD is a pipeline check: the page opens on the real PatchCore result.
    assert at.multiselect(key="cmp_runs").value == [demo_runs[0]]
    titles = chart_titles(at)
    for expected in (
        "Quality metrics per category",
        "Inference speed per path",
        "Fit (training) time",
        "ROC and precision-recall (image level)",
    ):
        assert expected in titles
    assert sum("Detection rate per defect type" in t for t in titles) == 1
    assert not at.warning
    # Added by hand, the check is flagged above the numbers, never passed off as a result.
    at.multiselect(key="cmp_runs").set_value(demo_runs).run()
    assert any(demo_runs[1] in w.value and "UNTRAINED" in w.value for w in at.warning)
    table = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
    assert sorted(table["run_id"]) == sorted(demo_runs)
    assert not at.error


def test_comparing_a_single_run_still_shows_its_charts_and_exports(demo_runs):
    at = open_compare()
    at.multiselect(key="cmp_runs").set_value([demo_runs[1]]).run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
    assert table["run_id"].tolist() == [demo_runs[1]]
    assert len(at.get("plotly_chart")) >= 6
    assert {b.label for b in at.get("download_button")} >= {"Download comparison table (CSV)", "Download HTML report"}


def test_removing_every_run_asks_to_pick_one(demo_runs):
    at = open_compare()
    at.multiselect(key="cmp_runs").set_value([]).run()
    assert not at.exception, at.exception
    assert any("Pick at least one run" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_moving_the_threshold_slider_updates_the_confusion_matrix(demo_runs):
    at = pick_whatif_run(open_compare(), demo_runs[0])
    before = confusion(at)
    slider = at.slider(key=f"cmp_thr_{demo_runs[0]}")
    slider.set_value(slider.max).run()  # only the top-scoring image is still flagged
    after = confusion(at)
    assert after != before
    assert sum(map(sum, after)) == sum(map(sum, before))  # same images, other verdicts
    assert after[1][0] > before[1][0]  # more defects missed
    assert metric(at, "Misses (escapes)") == str(after[1][0])


def test_zero_escapes_sets_the_threshold_so_no_defect_is_missed_and_shows_the_overkill_rate(demo_runs):
    at = pick_whatif_run(open_compare(), demo_runs[0])
    slider = at.slider(key=f"cmp_thr_{demo_runs[0]}")
    slider.set_value(slider.max).run()
    assert metric(at, "Misses (escapes)") != "0"

    at.button(key=f"cmp_zero_{demo_runs[0]}").click().run()
    assert not at.exception, at.exception
    assert metric(at, "Misses (escapes)") == "0"
    assert confusion(at)[1][0] == 0  # fn
    assert any("overkill rate" in c.value for c in at.caption)
    assert metric(at, "Overkill rate").endswith("%")
