"""The trust checks on the pages, driven like a user would with Streamlit's AppTest through app.py's navigation:
the training-set audit on Training runs, the detection limit on Compare models. Each test: a user action, then
what must be true."""

from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.data import datasets
from core.store.artifacts import RunArtifacts
from core.store.runs import QUEUED, RunRegistry

PLANTED = "zz_planted.png"


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def chart_titles(at: AppTest) -> list[str]:
    titles = []
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec)["layout"].get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title))
    return titles


def test_auditing_the_demo_training_set_shows_the_planted_defect_first_and_exclude_and_retrain_queues_a_run(
    artifacts,
):
    spec = datasets.demo()  # what the page's Demo choice uses
    shutil.copy(spec.path / "test" / "crack" / "002.png", spec.path / "train" / "good" / PLANTED)
    at = open_page("pages/training.py")

    at.button(key="audit_run").click().run()  # "Audit training set"
    assert not at.exception, at.exception
    assert any("audited (25 images, 4-fold PatchCore" in m.value for m in at.markdown)
    captions = [img.proto.imgs[0].caption for img in at.get("image")]  # the ranked gallery, most anomalous first
    assert len(captions) == 12 and captions[0].startswith(f"#1 {PLANTED}")

    at.checkbox(key=f"audit_x_{PLANTED}").check().run()
    at.text_input(key="audit_reason").input("crack in a good image").run()
    at.button(key="audit_retrain").click().run()  # "Exclude and retrain"
    assert not at.exception, at.exception
    assert any(f"Excluded now: {PLANTED}" in s.value for s in at.success)
    queued = RunRegistry().list(status=QUEUED)
    assert len(queued) == 1 and queued[0].dataset["excluded"] == [PLANTED]
    assert datasets.demo().excluded == (PLANTED,)
    assert PLANTED not in {p.name for p in datasets.train_images(datasets.DatasetSpec.from_dict(queued[0].dataset))}


def test_measuring_a_runs_detection_limit_on_compare_shows_the_statements_and_the_recall_curves(demo_runs):
    patchcore = demo_runs[0]
    for run_id in demo_runs:  # start from runs without a stored limit (other tests may have measured one)
        RunArtifacts(RunRegistry().run_dir(run_id)).limit_path.unlink(missing_ok=True)
    at = open_page("pages/compare.py")
    assert any(s.value == "Detection limit" for s in at.subheader)

    at.selectbox(key="cmp_limit_run").set_value(patchcore).run()
    at.button(key="cmp_limit_go").click().run()  # "Measure detection limit" (about 10 s at the demo's size)
    assert not at.exception, at.exception

    assert RunArtifacts(RunRegistry().run_dir(patchcore)).limit()["run_id"] == patchcore
    text = "\n".join(m.value for m in at.markdown)
    assert f"patchcore ({patchcore}): scratches are" in text and "zero escapes" in text
    assert any(t.startswith(f"Detection limit of patchcore ({patchcore}) at zero escapes") for t in chart_titles(at))
    table = next(d.value for d in at.dataframe if "scratch px" in d.value.columns)
    assert table.set_index("run").loc[patchcore, "image AUROC"] > 0.5

    at.radio(key="cmp_limit_point").set_value("run").run()  # at the run's own threshold instead
    assert any("at the run's threshold" in t for t in chart_titles(at))
