"""The Heatmap viewer's Inspect view: why an image is flagged, mark it normal, see before/after, undo — as a user."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT, settings
from core.store.artifacts import RunArtifacts
from core.store.versions import RunVersions


def inspect_worst_false_alarm(run_id: str) -> tuple[AppTest, str]:
    records = RunArtifacts(settings().run_dir(run_id)).records
    worst = records[records.label == 0].sort_values("score").iloc[-1]
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/heatmaps.py").run()
    at.selectbox(key="hm_run").set_value(run_id).run()
    at.radio(key="hm_label").set_value("normal").run()
    at.button(key=f"hm_inspect_{int(worst['index'])}").click().run()
    assert not at.exception, at.exception
    return at, worst.path


def captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def test_inspect_shows_why_an_image_is_flagged(demo_runs_copy):
    at, _ = inspect_worst_false_alarm(demo_runs_copy[0])
    assert "Why flagged" in [h.value for h in at.subheader]
    assert any(c.startswith("This image: hottest patch") for c in captions(at))
    assert any(c.startswith("Closest normal patch:") and "distance" in c for c in captions(at))


def test_mark_as_normal_makes_a_version_shows_before_after_and_undo_goes_back(demo_runs_copy):
    run_id = demo_runs_copy[0]
    at, path = inspect_worst_false_alarm(run_id)

    at.text_input(key="hm_fb_note").input("glare").run()
    at.button(key="hm_fb_normal").click().run()

    assert not at.exception, at.exception
    assert any(s.value.startswith("v2 (from v1)") for s in at.success)
    assert at.selectbox(key="hm_version").value == 2
    table = at.dataframe[0].value
    assert list(table["version"]) == ["v1", "v2"] and "FPR @ 100 % recall" in table
    assert RunVersions(settings().run_dir(run_id)).get(2).note == "glare"

    at.button(key="hm_fb_undo").click().run()
    assert any("Back at v1" in s.value for s in at.success)
    assert RunVersions(settings().run_dir(run_id)).current() == 1


def open_viewer(run_id: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/heatmaps.py").run()
    at.selectbox(key="hm_run").set_value(run_id).run()
    return at


def test_an_upload_is_explained_and_marking_it_normal_keeps_the_image_in_a_new_version(demo_runs_copy):
    run_id = demo_runs_copy[0]
    records = RunArtifacts(settings().run_dir(run_id)).records
    png = Path(records[records.label == 0].path.iloc[0]).read_bytes()
    at = open_viewer(run_id)
    at.file_uploader(key="hm_upload").set_value(("line_photo.png", png, "image/png")).run()

    at.button(key="hm_upload_why_line_photo.png").click().run()
    assert not at.exception, at.exception
    assert "Why flagged" in [h.value for h in at.subheader]
    assert any(c.startswith("Closest normal patch:") for c in captions(at))

    at.button(key="hm_up_fb_normal").click().run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("v2 (from v1)") and "line_photo" in s.value for s in at.success)
    v2 = RunVersions(settings().run_dir(run_id)).get(2)
    kept = Path(v2.feedback_image)
    assert kept.is_file() and kept.name.endswith("-line_photo.png")  # the upload outlives the browser session
    assert kept.parent == settings().run_dir(run_id) / "feedback_images"
    assert at.selectbox(key="hm_version").value == 2  # the page now looks at the new version


def test_marking_an_image_labelled_defective_as_normal_is_warned_first(demo_runs_copy):
    run_id = demo_runs_copy[0]
    records = RunArtifacts(settings().run_dir(run_id)).records
    defect = records[records.label == 1].iloc[0]
    at = open_viewer(run_id)
    at.button(key=f"hm_inspect_{int(defect['index'])}").click().run()
    warned = [w.value for w in at.warning if "labelled defective" in w.value]
    assert warned and defect["defect_type"] in warned[0]

    at.button(key="hm_fb_normal").click().run()
    assert any(s.value.startswith("v2 (from v1)") for s in at.success)  # allowed: the label may be wrong
    assert sum("labelled defective" in w.value for w in at.warning) >= 1


def test_a_model_without_a_bank_keeps_the_mark_and_offers_retrain_with_feedback(demo_runs_copy):
    from core.store.runs import QUEUED, RunRegistry

    run_id = demo_runs_copy[1]  # EfficientAD: no memory bank
    records = RunArtifacts(settings().run_dir(run_id)).records
    normal = records[records.label == 0].iloc[0]
    at = open_viewer(run_id)
    at.button(key=f"hm_inspect_{int(normal['index'])}").click().run()
    assert not at.exception, at.exception
    assert any(c.startswith("map ") for c in captions(at))  # the hottest regions, as crops with their scores

    at.button(key="hm_fb_normal").click().run()
    assert any(s.value.startswith("Kept as normal") for s in at.success)
    assert RunVersions(settings().run_dir(run_id)).current() == 1  # no new version without a bank

    at.button(key="hm_fb_retrain").click().run()
    assert not at.exception, at.exception
    queued = [r for r in RunRegistry().list() if r.extra.get("retrained_from") == run_id]
    assert len(queued) == 1 and queued[0].status == QUEUED
    assert any(f"Queued run {queued[0].id}" in s.value for s in at.success)
    assert normal.path in queued[0].dataset["extra_train"]


def test_read_only_shows_why_flagged_but_no_button_that_changes_the_run(demo_runs_copy, monkeypatch):
    monkeypatch.setenv("AW_READ_ONLY", "1")
    at, _ = inspect_worst_false_alarm(demo_runs_copy[0])
    assert "Why flagged" in [h.value for h in at.subheader]
    keys = {b.key for b in at.button}
    assert not keys & {"hm_fb_normal", "hm_fb_defect", "hm_fb_undo", "hm_fb_retrain"}


def test_a_corrected_run_shows_its_versions_on_compare_and_training(demo_runs_copy):
    from core.engine import feedback

    run_id = demo_runs_copy[0]
    run_dir = settings().run_dir(run_id)
    records = RunArtifacts(run_dir).records
    worst = records[records.label == 0].sort_values("score").iloc[-1]
    feedback.mark_normal(run_dir, worst.path, note="glare")

    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/compare.py").run()
    at.multiselect(key="cmp_runs").set_value([run_id]).run()
    assert not at.exception, at.exception
    assert "Corrected versions" in [h.value for h in at.subheader]
    assert at.selectbox(key=f"cmp_version_{run_id}").value == 2
    table = next(d.value for d in at.dataframe if list(d.value.get("version", [])) == ["v1", "v2"])
    assert {"TP", "FP", "FPR @ 100 % recall", "image AUROC"} <= set(table.columns)

    at.switch_page("pages/training.py").run()
    at.selectbox(key="history_run").set_value(run_id).run()
    lineage = next(d.value for d in at.dataframe if "change" in d.value)
    assert list(lineage["version"]) == ["v1", "v2 · current"] and lineage["note"].iloc[1] == "glare"
