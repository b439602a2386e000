"""A real browser: `python app.py` (as `make run` starts it) on localhost, every page opened in headless Chromium.

Each page must render its title and show no exception; screenshots go to tests/output/screens/ so a person
can look at what a user sees. Skipped (with the reason) where Debian's chromium is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT
from tests.conftest import _offline_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENS = PROJECT_ROOT / "tests" / "output" / "screens"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
PAGES = [  # (url path, text the page must show); a deep link first, as when someone shares a link
    ("compare-models", "Compare models"),
    ("", "Anomaly Workbench"),
    ("training-runs", "Training runs"),
    ("heatmap-viewer", "Heatmap viewer"),
    ("similar-cases", "Similar cases"),
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(demo_runs_root):
    root, _ = demo_runs_root
    port = _free_port()
    env = {**os.environ, **_offline_env(root), "AW_AUTOSTART_WORKER": "0"}
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start within 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_every_page_opens_in_a_real_browser_without_an_exception(server):
    from playwright.sync_api import sync_playwright

    SCREENS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path, expected in PAGES:
            page.goto(f"{server}/{path}", wait_until="domcontentloaded")
            # A cold app renders in steps: wait for the page's own title in the main area (the sidebar has the
            # same words), then for Streamlit to stop running the script, then for charts/images to paint.
            page.locator("[data-testid='stMain'] h1").filter(has_text=expected).first.wait_for(timeout=120_000)
            page.wait_for_function(
                "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
            page.wait_for_timeout(2500)
            name = path or "home"
            page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)
            body = page.inner_text("body")
            assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: {body[:2000]}"
            assert "Traceback" not in body, f"{name} shows a traceback"
            assert "Page not found" not in body, f"{name}: a deep link right after the server started fell back"
        browser.close()
