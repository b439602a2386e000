"""The Heatmap viewer's Inspect view: why an image is flagged, mark it normal, see before/after, undo — as a user."""

from __future__ import annotations

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
