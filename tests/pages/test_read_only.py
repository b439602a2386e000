"""A stakeholder at a shared screen (AW_READ_ONLY=1) can open every page and change nothing: no write button shows."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT

WRITE_BUTTONS = {"launch", "rerun", "delete", "confirm_delete_yes", "cmp_limit_go", "audit_run", "audit_retrain"}


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def labels(at: AppTest) -> set[str]:
    return {b.label for b in at.button} | {str(b.key) for b in at.button}


def test_every_page_opens_read_only_without_a_button_that_changes_anything(demo_runs, monkeypatch):
    monkeypatch.setenv("AW_READ_ONLY", "1")
    home = open_page("home")
    assert "Train a first model on the demo data" not in labels(home)
    assert any("read-only" in c.value for c in home.caption)
    assert any("Read-only" in i.value for i in home.sidebar.info)

    training = open_page("training")
    assert any("read-only" in i.value for i in training.info)  # instead of the launch form
    training.selectbox(key="history_run").set_value(demo_runs[0]).run()
    assert not labels(training) & (WRITE_BUTTONS | {"Import folders", "Import zip"})

    compare = open_page("compare")
    assert "cmp_limit_go" not in labels(compare)

    heatmaps = open_page("heatmaps")
    assert "Heatmap viewer" in [t.value for t in heatmaps.title]


def test_without_read_only_the_same_buttons_are_there(demo_runs):
    training = open_page("training")
    training.selectbox(key="history_run").set_value(demo_runs[0]).run()
    assert {"launch", "rerun", "delete"} <= labels(training)
    assert "Train a first model on the demo data" in labels(open_page("home"))


@pytest.fixture
def bound_to_every_interface():
    """As if started with ``--server.address 0.0.0.0`` (AW_HOST=0.0.0.0 make run)."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    yield
    config.set_option("server.address", before)


def test_a_dashboard_open_to_the_network_without_a_login_serves_nothing_but_a_read_only_demo(
    demo_runs, bound_to_every_interface, monkeypatch
):
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert any("without a login, so it serves nothing" in e.value and "AW_READ_ONLY=1" in e.value for e in at.error)
    assert not at.title  # no page ran

    monkeypatch.setenv("AW_READ_ONLY", "1")
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    assert "Anomaly Workbench" in [t.value for t in at.title] and not at.error
