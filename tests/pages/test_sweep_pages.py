"""Sweeps in the app, driven with Streamlit's AppTest: planned and queued from Training runs, charted on Compare."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.store.runs import QUEUED, RunRegistry


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")


def open_app(page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=90).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_an_engineer_plans_a_sweep_sees_its_total_and_queues_it_as_one_group(artifacts):
    at = open_app("pages/training.py")
    at.radio(key="source").set_value("Demo dataset").run()
    at.selectbox(key="param_patchcore_backbone").set_value("tf_efficientnet_lite0").run()

    at.text_area(key="sweep_values").set_value("image_size=64,128\nnum_neighbors=1,9").run()

    assert not at.exception and not at.error, [e.value for e in at.error]
    plan = next(d.value for d in at.dataframe if "estimate" in d.value.columns)
    assert plan[["image_size", "num_neighbors"]].values.tolist() == [[64, 1], [64, 9], [128, 1], [128, 9]]
    assert any("**4 runs** of PatchCore on Demo / demo, estimated in all" in m.value for m in at.markdown)
    assert RunRegistry().list() == []  # planning queues nothing

    at.button(key="sweep_launch").click().run()

    runs = RunRegistry().list()
    assert len(runs) == 4 and {r.status for r in runs} == {QUEUED}
    assert len({r.extra["sweep"]["id"] for r in runs}) == 1
    assert runs[0].extra["sweep"]["id"] in at.success[0].value

    # Compare before any run has finished: the sweep is named with its progress, not only "no finished runs"
    compare = open_app("pages/compare.py")
    assert any(
        f"Sweep **{runs[0].extra['sweep']['id']}**" in c.value and "0/4 runs done" in c.value for c in compare.caption
    )


def test_a_typo_in_the_values_is_a_message_not_a_traceback(artifacts):
    at = open_app("pages/training.py")
    at.radio(key="source").set_value("Demo dataset").run()

    at.text_area(key="sweep_values").set_value("imagesize=64,128").run()

    assert not at.exception
    assert "PatchCore has no parameter 'imagesize'" in at.error[0].value


def test_the_compare_page_charts_a_finished_sweep_with_its_front_and_a_recommendation(finished_sweep):
    at = open_app("pages/compare.py")

    table = next(d.value for d in at.dataframe if "pareto_optimal" in d.value.columns)
    assert len(table) == 4 and "yes" in set(table["pareto_optimal"])
    assert any(m.value.startswith("Recommended: image_size=") for m in at.markdown)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "image AUROC against fit s" in titles
    assert {"Quality against image_size", "Quality against coreset_sampling_ratio"} <= set(titles)
