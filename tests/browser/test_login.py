"""Closed by default: with a login configured, a real browser signs in against a real local OIDC provider
(``oidc-provider-mock`` on 127.0.0.1) through Streamlit's ``st.login``. Logged out, every link shows the sign-in page;
a viewer sees every page but no Delete button; an engineer deletes a run, and the audit log says who did it.
Screenshots of every step go to tests/output/screens/."""

from __future__ import annotations

import re
import shutil

import pytest

from core.store import access
from core.store.runs import RunRegistry
from tests.browser.test_browser import CHROMIUM, _browser, _free_port, _serve, _settle, _stop, check_view

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)"
)

USERS = {"ana": {"email": "ana@plant.example", "roles": ["engineer"]}, "vic": {"email": "vic@plant.example"}}


@pytest.fixture
def provider():
    from oidc_provider_mock import User, run_server_in_thread

    with run_server_in_thread(
        port=0, user_claims=[User(sub=sub, claims=claims) for sub, claims in USERS.items()]
    ) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def login_server(demo_runs_root, tmp_path, provider, monkeypatch):
    """The app over a copy of the demo runs, with an [auth] section pointing at the local provider."""
    root, ids = demo_runs_root
    copy = tmp_path / "artifacts"
    shutil.copytree(root, copy)
    port = _free_port()
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-long-random-string-for-the-test-only"\n'
        'client_id = "anomaly-workbench"\n'
        'client_secret = "not-checked-by-the-mock"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    proc, url = _serve(copy, autostart=False, port=port, extra_args=("--secrets.files", str(secrets)))
    monkeypatch.setenv("AW_ARTIFACTS", str(copy))
    yield url, copy, ids
    _stop(proc)


def _sign_in(page, url: str, sub: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    _settle(page, "Anomaly Workbench")
    page.get_by_role("button", name=re.compile("Sign in")).click()
    page.get_by_role("button", name=sub, exact=True).click()  # the provider's page: a predefined user
    page.get_by_text(re.compile(f"Signed in as {re.escape(USERS[sub]['email'])}")).first.wait_for(timeout=120_000)


def _history_of(page, url: str, run_id: str) -> None:
    page.goto(f"{url}/training-runs", wait_until="domcontentloaded")
    _settle(page, "Training runs")
    page.get_by_role("tab", name=re.compile("History")).click()
    page.get_by_text(run_id).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)


def test_logged_out_sees_sign_in_a_viewer_cannot_delete_an_engineer_can(login_server):
    from playwright.sync_api import sync_playwright

    url, root, ids = login_server
    run_id = ids[-1]
    with sync_playwright() as pw:
        browser, page = _browser(pw)
        page.goto(f"{url}/training-runs", wait_until="domcontentloaded")  # a shared deep link, logged out
        _settle(page, "Anomaly Workbench")
        body = check_view(page, "login-1-signed-out")
        assert "Sign in with your plant account" in body and "Training runs" not in body

        _sign_in(page, url, "vic")
        assert "(viewer)" in check_view(page, "login-2-viewer-home")
        _history_of(page, url, run_id)
        body = check_view(page, "login-3-viewer-history")
        assert page.get_by_role("button", name="Delete…").count() == 0
        assert page.get_by_role("button", name="Re-run").count() == 0
        page.get_by_role("button", name=re.compile("Log out")).click()
        page.get_by_role("button", name="End session").click()  # the provider ends its session too
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, "Anomaly Workbench")
        assert page.get_by_role("button", name=re.compile("Sign in")).count() == 1  # signed out of the dashboard

        _sign_in(page, url, "ana")
        _history_of(page, url, run_id)
        check_view(page, "login-4-engineer-history")
        page.get_by_role("button", name="Delete…").click()
        page.get_by_role("button", name="Yes, delete").click()
        page.get_by_text(f"Deleted run {run_id}").first.wait_for(timeout=60_000)
        check_view(page, "login-5-engineer-deleted")
        browser.close()

    registry = RunRegistry()
    assert run_id not in {r.id for r in registry.list()}
    deletes = [e for e in access.read_log() if e["action"] == "delete run"]
    assert [(e["who"], e["role"], e["run_id"]) for e in deletes] == [("ana@plant.example", "engineer", run_id)]
    with access.acting_as("vic@plant.example", access.role_of(USERS["vic"])), pytest.raises(Exception, match="viewer"):
        registry.delete(ids[0])  # and a viewer's delete call is refused in core, not only hidden
