"""The app shell, Home and Training runs, driven like a user would with Streamlit's AppTest.

Each test: a user action, then what must be true. Pages never start a background worker here
(AW_AUTOSTART_WORKER=0), so a queued run stays queued and nothing outlives the test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import models
from core.config import PROJECT_ROOT
from core.data import datasets
from core.jobs import launch
from core.models import efficientad, weights
from core.store.runs import DONE, FAILED, QUEUED, RunRegistry
from tests.conftest import import_photos

PAGES = {
    "pages/home.py": "Anomaly Workbench",
    "pages/training.py": "Training runs",
    "pages/compare.py": "Compare models",
    "pages/heatmaps.py": "Heatmap viewer",
    "pages/similarity.py": "Similar cases",
}
SMALL_DEMO = dict(n_train=6, n_test_good=2, n_test_per_defect=1, size=128, seed=0)


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=60).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def history_table(at: AppTest):
    return next(df.value for df in at.dataframe if "image AUROC" in df.value.columns and "id" in df.value.columns)


# ---- app shell ---------------------------------------------------------------------------------------------


def test_every_page_renders_on_an_empty_artifacts_folder(artifacts):
    at = open_app()
    assert at.title[0].value == PAGES["pages/home.py"]  # Home is the start page
    for page, title in PAGES.items():
        at.switch_page(page).run()
        assert not at.exception, f"{page}: {at.exception}"
        if page in ("pages/home.py", "pages/training.py"):
            assert not at.error, f"{page}: {texts(at.error)}"
        assert at.title[0].value == title, page


def test_pages_run_through_app_py_not_as_a_legacy_pages_folder(artifacts):
    # A page run on its own (Streamlit's legacy pages/ mode) would skip app.py's page config and navigation.
    at = open_app("pages/training.py")
    at.run()  # a rerun, as after any click
    assert at.title[0].value == "Training runs"
    assert "recovered_runs" in at.session_state  # set by app.py


def test_opening_the_app_marks_a_run_whose_worker_died_as_failed(artifacts):
    registry = RunRegistry()
    run = registry.create("patchcore", datasets.DatasetSpec("demo", "demo", "/nowhere").to_dict(), {}, 0)
    registry.update(run.id, status="running", pid=2**22 + 7, started_at=run.created_at)  # no such process
    open_app()
    assert registry.get(run.id).status == FAILED
    assert "Interrupted" in registry.get(run.id).error


# ---- home --------------------------------------------------------------------------------------------------


def test_home_reports_what_the_machine_has(artifacts, monkeypatch):
    monkeypatch.setenv("AW_MVTEC_ROOT", str(artifacts / "no_mvtec_here"))
    at = open_app()
    page = texts(at.markdown) + texts(at.caption)
    assert "Offline" in page and "No category found" in page and str(artifacts) in page
    weights_table = next(df.value for df in at.dataframe if "weights" in df.value.columns)
    status = dict(zip(weights_table["weights"], weights_table["status"], strict=False))
    assert status["wide_resnet50_2"] == "missing"  # offline, never downloaded
    assert "tf_efficientnet_lite0" in status
    assert "No runs yet" in texts(at.info)


def test_home_first_run_queues_patchcore_on_the_demo_data_with_the_best_available_backbone(artifacts):
    best = launch.first_run_plan().params["backbone"]
    assert best in weights.available_backbones()
    at = open_app()
    at.button[0].click().run()  # "Train a first model on the demo data"
    assert not at.exception and not at.error, texts(at.error)
    [run] = RunRegistry().list()
    assert (run.model, run.status, run.dataset["kind"], run.params["backbone"]) == ("patchcore", QUEUED, "demo", best)
    # Home follows it live (a progress bar naming the run) instead of sending the user elsewhere.
    assert any(run.id in p.proto.text for p in at.get("progress")), [p.proto.text for p in at.get("progress")]


@pytest.fixture
def no_backbone_weights(artifacts, monkeypatch):
    """A machine with no backbone weights at all: offline, nothing imported, nothing bundled."""
    monkeypatch.setattr(weights, "BUNDLED", {}, raising=False)
    assert not weights.available_backbones()


def test_home_first_run_without_weights_explains_how_to_get_them_and_queues_nothing(no_backbone_weights):
    at = open_app()
    at.button[0].click().run()
    assert not at.exception
    assert "No pretrained backbone weights" in texts(at.warning) and "weights import" in texts(at.warning)
    assert not RunRegistry().list()


# ---- training runs: launching ------------------------------------------------------------------------------


def test_launching_a_demo_patchcore_run_from_the_form_queues_it(artifacts):
    at = open_app("pages/training.py")
    at.radio(key="source").set_value("Demo dataset").run()
    at.selectbox(key="param_patchcore_backbone").set_value("tf_efficientnet_lite0")
    at.number_input(key="param_patchcore_coreset_sampling_ratio").set_value(0.01)
    at.number_input(key="param_patchcore_image_size").set_value(128).run()

    at.button(key="launch").click().run()
    assert not at.exception and not at.error, texts(at.error)
    [run] = RunRegistry().list()
    assert (run.model, run.status, run.dataset["kind"]) == ("patchcore", QUEUED, "demo")
    assert run.params["coreset_sampling_ratio"] == 0.01 and run.params["image_size"] == 128
    assert run.id in texts(at.success)


def test_launching_on_high_resolution_photos_says_which_size_the_data_got_why_and_what_each_size_costs(
    artifacts, tmp_path
):
    import_photos("line3", tmp_path / "photos", size=800)
    at = open_app("pages/training.py")
    at.radio(key="source").set_value("Own dataset").run()
    at.selectbox(key="param_patchcore_backbone").set_value("tf_efficientnet_lite0").run()

    assert at.number_input(key="param_patchcore_image_size").value == 0  # the default: follow the data
    said = texts(at.info)
    assert "Image size for Own images / line3: 512 px, the bank capped at 8,000 patches" in said and "800×800" in said
    assert "256 px: about" in said and "512 px (chosen): about" in said  # what each size costs here

    at.button(key="launch").click().run()
    assert not at.exception and not at.error, texts(at.error)
    [run] = RunRegistry().list()
    assert run.params["image_size"] == 512 and "800×800" in run.extra["chosen_for_data"]["why"]


def test_launching_on_an_mvtec_category_missing_offline_shows_an_error_not_a_traceback(artifacts):
    at = open_app("pages/training.py")
    assert at.radio(key="source").value == "Demo dataset"  # no MVTec category on disk: the form opens on the demo
    at.radio(key="source").set_value("MVTec AD categories").run()
    at.multiselect(key="mvtec_cats").set_value(["bottle", "carpet"]).run()
    at.button(key="launch").click().run()
    assert not at.exception
    errors = texts(at.error)
    assert "'bottle' was not found" in errors and "'carpet' was not found" in errors and "offline" in errors
    assert not RunRegistry().list()


def test_efficientad_form_comes_from_the_registry_and_states_the_cpu_time(artifacts):
    at = open_app("pages/training.py")
    at.multiselect(key="models").set_value(["patchcore", "efficientad"]).run()
    default_steps = models.default_params("efficientad")["max_steps"]
    assert at.number_input(key="param_efficientad_max_steps").value == default_steps  # the registry's default
    info = texts(at.info)
    assert f"about {efficientad.EFFICIENTAD_S_PER_STEP['small']:.1f} s" in info and f"{default_steps} steps" in info
    assert "fits within ~15 minutes" in info  # the default is chosen to fit a demo
    # asking for far more steps than a demo allows says so, and suggests a number that fits
    at.number_input(key="param_efficientad_max_steps").set_value(5000).run()
    assert "over the ~15 minutes" in texts(at.info) and "5000 steps" in texts(at.info)
    at.selectbox(key="param_efficientad_teacher").set_value("untrained").run()
    assert "UNTRAINED (random) teacher" in texts(at.warning)


# ---- training runs: in progress and history ----------------------------------------------------------------


def test_a_queued_run_shows_in_progress_and_can_be_cancelled(artifacts):
    spec = datasets.demo(**SMALL_DEMO)
    run = RunRegistry().create("patchcore", spec.to_dict(), {}, 0)
    at = open_app("pages/training.py")
    assert "queued" in texts(at.markdown) and run.id in texts(at.markdown)
    at.button(key=f"cancel_{run.id}").click().run()
    assert RunRegistry().get(run.id).status == "cancelled"


def test_history_shows_both_demo_runs_with_their_metrics(demo_runs):
    at = open_app("pages/training.py")
    table = history_table(at).set_index("id")
    assert set(demo_runs) <= set(table.index)
    for run_id in demo_runs:
        assert table.loc[run_id, "status"] == DONE
        for metric in ("image AUROC", "pixel AUROC", "image F1", "AUPRO", "fit s", "img/s"):
            assert not math.isnan(table.loc[run_id, metric]), (run_id, metric)
    assert set(table.loc[demo_runs, "model"]) == {"PatchCore", "EfficientAD"}
    assert table.loc[demo_runs[1], "note"] == "pipeline check only"  # EfficientAD with an untrained teacher
    assert any("CSV" in b.label for b in at.get("download_button"))

    at.selectbox(key="history_run").set_value(demo_runs[1]).run()  # the EfficientAD run's detail
    assert not at.exception
    assert {m.label for m in at.metric} >= {"image AUROC", "pixel AUROC", "image F1", "AUPRO"}
    assert "UNTRAINED (random) teacher" in texts(at.warning)


def test_a_failed_run_shows_its_error_and_can_be_deleted_after_confirming(artifacts):
    registry = RunRegistry()
    run = registry.create("patchcore", datasets.DatasetSpec("demo", "demo", "/nowhere").to_dict(), {}, 0)
    registry.finish(run.id, FAILED, error="Out of memory during coreset selection.")
    at = open_app("pages/training.py")
    assert "Out of memory during coreset selection." in texts(at.error)

    at.button(key="delete").click().run()
    assert registry.get(run.id)  # still there: asked to confirm first
    at.button(key="confirm_delete_yes").click().run()
    assert not at.exception
    assert not registry.list() and not registry.run_dir(run.id).exists()
    assert f"Deleted run {run.id}" in texts(at.success)


def test_re_run_queues_a_copy_with_the_same_spec(artifacts):
    spec = datasets.demo(**SMALL_DEMO)
    params = {"backbone": "tf_efficientnet_lite0", "coreset_sampling_ratio": 0.01}
    old = launch.queue("patchcore", spec, params, seed=3)
    RunRegistry().finish(old.id, FAILED, error="boom")
    at = open_app("pages/training.py")
    at.button(key="rerun").click().run()
    assert not at.exception and texts(at.error) == "boom"  # only the old run's own error
    new = next(r for r in RunRegistry().list() if r.id != old.id)
    assert (new.status, new.params, new.seed, new.dataset) == (QUEUED, old.params, 3, old.dataset)
    assert f"Queued {new.id}, a re-run of {old.id}" in texts(at.success)


def test_an_unexpected_error_on_a_page_is_a_message_naming_the_incident_not_a_traceback(artifacts, monkeypatch):
    from core.store import incidents
    from core.views import overview

    def broken(*args, **kwargs):  # a fault no user input explains (a bug, a broken disk)
        raise RuntimeError("table went away")

    monkeypatch.setattr(overview, "runs_frame", broken)
    registry = RunRegistry()  # a run in the history, so the page draws its table
    registry.finish(registry.create("patchcore", datasets.demo(**SMALL_DEMO).to_dict(), {}, 0).id, FAILED, error="x")
    at = open_app("pages/training.py")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith("Unexpected error in") and "RuntimeError: table went away" in e for e in errors)
    assert "table went away" in incidents.read()


def test_an_unexpected_error_in_a_page_action_is_a_message_and_the_page_stays(artifacts, monkeypatch, tmp_path):
    from core.data import importing

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")  # a disk failing mid-import

    monkeypatch.setattr(importing, "import_folder", broken)
    at = open_app("pages/training.py")
    at.radio(key="source").set_value("Own dataset").run()
    at.radio(key="own_mode").set_value("Import from folders").run()
    at.text_input(key="imp_name").input("line3").run()
    at.text_input(key="imp_normal").input(str(tmp_path)).run()
    next(b for b in at.button if b.label == "Import folders").click().run()
    assert not at.exception
    assert any("Unexpected error in the dataset import (OSError" in e.value for e in at.error)
    assert "Training runs" in [t.value for t in at.title]


def _own_images(at: AppTest, mode: str) -> AppTest:
    at.radio(key="source").set_value("Own dataset").run()
    return at.radio(key="own_mode").set_value(mode).run()


def test_a_damaged_zip_uploaded_in_the_app_is_refused_with_the_reason_and_leaves_nothing(artifacts, tmp_path):
    from tests.e2e.test_bad_inputs import _crc_zip

    zip_path = Path(_crc_zip(tmp_path)[1])
    at = _own_images(open_app("pages/training.py"), "Upload a zip")
    at.file_uploader(key="zip_file").set_value(("line3.zip", zip_path.read_bytes(), "application/zip")).run()
    next(b for b in at.button if b.label.startswith("Import zip")).click().run()
    assert not at.exception
    assert any("is damaged" in e.value and "Nothing was imported" in e.value for e in at.error)
    assert datasets.list_custom() == []


def test_masks_in_the_app_pair_by_type_and_size_and_colour_mismatches_are_named(artifacts, tmp_path):
    from tests.e2e.test_bad_inputs import _defect, _folder, _mask

    _folder(
        tmp_path,
        {"scratch/x1.png": _defect(1), "dent/x1.png": _defect(2), "stain/s1.png": _defect(3)},
        {"scratch/x1.png": _mask(32), "stain/s1.png": _mask(rgb=True)},  # dent/x1 must not take scratch's mask
    )
    at = _own_images(open_app("pages/training.py"), "Import from folders")
    at.text_input(key="imp_name").input("line3").run()
    at.text_input(key="imp_normal").input(str(tmp_path / "normal")).run()
    at.text_input(key="imp_abnormal").input(str(tmp_path / "abnormal")).run()
    at.text_input(key="imp_masks").input(str(tmp_path / "masks")).run()
    next(b for b in at.button if b.label == "Import folders").click().run()
    assert not at.exception
    assert any(s.value.startswith("Imported 'line3'") for s in at.success)
    notes = " ".join(i.value for i in at.info)
    assert "no mask" in notes and "x1.png" in notes  # dent's x1: none of its own type
    assert "resized" in notes and "colour" in notes
