"""The Similar cases page, driven like a user would with Streamlit's AppTest (real models, real embedded Qdrant).

Opened through app.py + switch_page, as in the real app (see tests/pages/test_heatmaps.py for why).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT, settings
from core.store.artifacts import RunArtifacts
from core.store.runs import RunRegistry

PAGE = "pages/similarity.py"


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")  # the app shell must not start a background worker here


def open_page(run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=240).run()
    at.switch_page(PAGE).run()
    if run_id:
        at.selectbox(key="sim_run").set_value(run_id).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Similar cases"
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def cards(at: AppTest) -> list[str]:
    """The '#rank · similarity …' line of every neighbour card."""
    return [m for m in texts(at.markdown) if m.startswith("**#")]


def card_files(at: AppTest) -> list[str]:
    """The 'split · folder/file name' caption of every neighbour card."""
    return [c.split(" · ", 1)[1] for c in texts(at.caption) if c.startswith(("test · ", "train · "))]


def records(run_id: str):
    return RunArtifacts(settings().run_dir(run_id)).records


def test_without_runs_the_page_points_to_training(artifacts):
    at = open_page()
    assert not at.error
    assert any("No finished runs" in m for m in texts(at.info))
    assert any(link.proto.label == "Go to Training runs" for link in at.get("page_link"))


def test_opening_a_run_shows_a_defective_query_its_neighbours_and_the_precision_table(demo_runs):
    patchcore, _ = demo_runs
    at = open_page(patchcore)
    assert not at.error
    assert len(cards(at)) == 5 and len(at.image) == 1 + 5  # the query and one picture per neighbour
    assert all("similarity **" in c and "score" in c for c in cards(at))

    table = at.dataframe[0].value
    assert list(table["embedding"]) == ["defect-centred", "global"]
    assert {"same label @1", "same label @5", "same label @10", "same defect type @5"} <= set(table.columns)
    assert table.drop(columns="embedding").map(lambda v: 0.0 <= v <= 1.0).all().all()
    assert any("precision@k" in c for c in texts(at.caption))


def test_choosing_a_test_image_and_k_shows_k_neighbours_without_the_query_itself(demo_runs):
    patchcore, _ = demo_runs
    recs = records(patchcore)
    pos = int(recs.index[recs["label"] == 1][-1])  # the last defective image, not the default first one
    at = open_page(patchcore)

    at.selectbox(key=f"sim_image_{patchcore}_any").set_value(pos).run()
    at.slider(key="sim_k").set_value(7).run()

    assert not at.exception and not at.error
    assert len(cards(at)) == 7
    query = Path(recs.iloc[pos]["path"])
    assert f"{query.parent.name}/{query.name}" not in card_files(at)
    assert len(at.image) == 1 + 7  # the query and its neighbours


def test_filtering_neighbours_to_normal_train_images_shows_only_those(demo_runs):
    patchcore, _ = demo_runs
    at = open_page(patchcore)

    at.radio(key="sim_label").set_value("normal").run()
    at.radio(key="sim_split").set_value("train").run()

    assert not at.exception and not at.error
    assert len(cards(at)) == 5
    assert all("similarity" in c and "\nnormal · score" in c for c in cards(at))
    assert all(c.startswith("train · ") for c in texts(at.caption) if c.startswith(("test · ", "train · ")))


def test_an_uploaded_small_grayscale_image_is_looked_up_with_the_runs_model(demo_runs):
    patchcore, _ = demo_runs
    at = open_page(patchcore)
    gray = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (60, 100), dtype=np.uint8), (5, 5), 0)
    png = cv2.imencode(".png", gray)[1].tobytes()

    at.radio(key="sim_source").set_value("upload").run()
    assert any("Upload an image" in m for m in texts(at.info))  # says what to do, no empty gallery
    at.file_uploader(key="sim_upload").set_value(("part.png", png, "image/png")).run()

    assert not at.exception and not at.error
    assert len(cards(at)) == 5


def test_the_untrained_efficientad_run_is_searchable_and_keeps_its_caveat(demo_runs):
    _, efficientad = demo_runs
    at = open_page(efficientad)
    assert not at.error
    assert any("UNTRAINED" in w for w in texts(at.warning))
    assert len(cards(at)) == 5


def test_a_run_without_index_explains_and_can_be_indexed_from_the_page(demo_runs_copy):
    patchcore, _ = demo_runs_copy
    RunRegistry().update(patchcore, retrieval={})  # e.g. a run trained before indexing existed
    at = open_page(patchcore)
    assert any("has no similarity index" in w for w in texts(at.warning))
    assert not cards(at)

    at.button(key=f"sim_index_{patchcore}").click().run()

    assert not at.exception and not at.error
    assert RunRegistry().get(patchcore).retrieval["points"] > len(records(patchcore))
    assert len(cards(at)) == 5 and len(at.dataframe) == 1


def test_a_run_whose_points_were_deleted_says_so_and_offers_to_index_it(demo_runs_copy):
    from core.similarity.vectorstore import VectorStore

    patchcore, _ = demo_runs_copy
    VectorStore.open().delete_run(patchcore)
    at = open_page(patchcore)

    assert not at.exception
    assert any(f"run {patchcore} has no similarity index" in e for e in texts(at.error))
    assert at.button(key=f"sim_reindex_{patchcore}")


def test_an_unreachable_qdrant_server_is_an_error_message_not_a_traceback(demo_runs, monkeypatch):
    patchcore, _ = demo_runs
    monkeypatch.setenv("AW_QDRANT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    at = open_page(patchcore)

    assert not at.exception
    assert any("Qdrant server at http://127.0.0.1:9" in e for e in texts(at.error))
    assert not cards(at) and len(at.image) == 1  # the query is still shown, with no neighbours
    assert len(at.dataframe) == 1  # the stored precision figures are still shown
