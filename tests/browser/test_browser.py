"""A real browser: `python app.py` (as `make run` starts it) on localhost, driven in headless Chromium.

What a stakeholder sees must render on any machine: every page, with runs and without, the Training page while
a run is live and the Heatmap viewer after an upload, shows its title, no Streamlit exception box and no glyph a
machine without an emoji font draws as an empty box ("tofu"). Screenshots of every view and of a stakeholder's
walk (Home -> first demo run -> Compare -> Heatmaps -> Similar cases, the run pre-selected everywhere) go to
tests/output/screens/ for a person to look at. Skipped (with the reason) where Debian's chromium is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
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
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
PAGES = [  # (url path, title the page must show); a deep link first, as when someone shares a link
    ("compare-models", "Compare models"),
    ("", "Anomaly Workbench"),
    ("training-runs", "Training runs"),
    ("heatmap-viewer", "Heatmap viewer"),
    ("similar-cases", "Similar cases"),
]
# Code points a machine without an emoji font cannot draw (pictographs, dingbats, variation selector 16) and the
# replacement character that marks text that could not be decoded.
TOFU = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u231a-\u23ff\ufe0f\ufffd]")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(root: Path, autostart: bool, port: int | None = None, extra_args: tuple[str, ...] = ()):
    port = port or _free_port()
    env = {**os.environ, **_offline_env(root), "AW_AUTOSTART_WORKER": "1" if autostart else "0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            *extra_args,
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("streamlit did not start within 60 s")


def _stop(proc) -> None:
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def server(demo_runs_root, tmp_path):
    """The app over a private copy of the session's demo runs (this test adds a live run to it)."""
    root, ids = demo_runs_root
    copy = tmp_path / "artifacts"
    shutil.copytree(root, copy)
    proc, url = _serve(copy, autostart=False)
    yield url, copy, ids
    _stop(proc)


@pytest.fixture
def empty_server(tmp_path):
    """The app on a fresh artifacts folder, starting its own worker, as on a new machine."""
    root = tmp_path / "artifacts"
    root.mkdir()
    proc, url = _serve(root, autostart=True)
    yield url, root
    _stop(proc)
    for line in subprocess.run(
        ["pgrep", "-f", "core worker|core execute"], capture_output=True, text=True
    ).stdout.split():
        try:
            if str(root) in Path(f"/proc/{line}/environ").read_text(errors="ignore"):
                os.kill(int(line), signal.SIGTERM)
        except OSError:
            pass


def _browser(pw):
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    return browser, browser.new_page(viewport={"width": 1400, "height": 1000})


def _settle(page, title: str) -> None:
    """A cold app renders in steps: wait for the page's own title in the main area (the sidebar has the same
    words), then for Streamlit to stop running the script, then for charts and images to paint."""
    page.locator("[data-testid='stMain'] h1").filter(has_text=title).first.wait_for(timeout=120_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    page.wait_for_timeout(2000)


def check_view(page, name: str) -> str:
    """Screenshot, then what must be true of any view: no exception box, no traceback, nothing drawn as tofu."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)
    body = page.inner_text("body")
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: {body[:2000]}"
    assert "Traceback" not in body, f"{name} shows a traceback"
    assert "Page not found" not in body, f"{name}: a deep link right after the server started fell back"
    # Text nodes and the labels of icons alike (titles, tooltips, aria labels are text too).
    text = page.evaluate(
        "() => document.body.innerText + ' ' + [...document.querySelectorAll('[title],[aria-label]')]"
        ".map(e => (e.getAttribute('title') || '') + (e.getAttribute('aria-label') || '')).join(' ')"
    )
    tofu = sorted({c for c in TOFU.findall(text)})
    assert not tofu, f"{name}: glyphs without a font here: {[hex(ord(c)) for c in tofu]}"
    return body


def test_every_page_renders_with_and_without_runs_a_live_run_and_an_upload(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, root, ids = server
    with sync_playwright() as pw:
        browser, page = _browser(pw)
        for path, title in PAGES:
            page.goto(f"{url}/{path}", wait_until="domcontentloaded")
            _settle(page, title)
            check_view(page, path or "home")
        # No Deploy button or developer menu in front of a stakeholder.
        assert page.get_by_text("Deploy", exact=True).count() == 0

        # Upload on the Heatmap viewer.
        from core.data.demo_data import make_demo_image
        from core.data.images import to_png_bytes

        img, _ = make_demo_image("spot", seed=77)
        (tmp_path / "line_photo.png").write_bytes(to_png_bytes(img))
        (tmp_path / "notes.png").write_text("not an image")
        page.goto(f"{url}/heatmap-viewer", wait_until="domcontentloaded")
        _settle(page, "Heatmap viewer")
        page.get_by_role("tab", name=re.compile("Score your own images")).click()
        page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(
            [str(tmp_path / "line_photo.png"), str(tmp_path / "notes.png")]
        )
        page.get_by_text("line_photo.png").first.wait_for(timeout=120_000)
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
        page.wait_for_timeout(2000)
        body = check_view(page, "heatmap-upload")
        assert "not a readable image" in body  # the bad file gets a message, the good one a score

        # The Training page while a real run is live (an EfficientAD run long enough to be caught running).
        env = {**os.environ, **_offline_env(root)}
        queue = subprocess.run(
            [
                sys.executable,
                "-m",
                "core",
                "train",
                "--model",
                "efficientad",
                "--dataset",
                "demo",
                "--background",
                "--param",
                "teacher=untrained",
                "--param",
                "max_steps=400",
                "--param",
                f"imagenet_dir={root / 'datasets' / 'demo' / 'demo' / 'train'}",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert queue.returncode == 0, queue.stderr
        run_id = queue.stdout.split("queued run ")[1].split(";")[0]
        try:
            page.goto(f"{url}/training-runs", wait_until="domcontentloaded")
            _settle(page, "Training runs")
            page.get_by_text(re.compile(r"(training|statistics|starting) · \d+%")).first.wait_for(timeout=180_000)
            check_view(page, "training-live")
            page.get_by_role("button", name="Cancel").first.click()
            page.get_by_text(re.compile("Cancelling|No run is queued or running")).first.wait_for(timeout=60_000)
        finally:
            subprocess.run(
                [sys.executable, "-m", "core", "cancel", run_id, "--force-after", "20"],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                timeout=120,
            )
        browser.close()


def test_an_engineer_explains_and_corrects_a_false_alarm_then_undoes_it(server):
    """Heatmap viewer -> the highest-scoring normal image -> Inspect -> Why flagged -> Mark as normal (a note) ->
    v2 with its before/after -> Undo -> back at v1, the undone version kept. Screenshots of every step."""
    from playwright.sync_api import sync_playwright

    from core.store.versions import RunVersions

    url, root, ids = server
    with sync_playwright() as pw:
        browser, page = _browser(pw)
        page.goto(f"{url}/heatmap-viewer", wait_until="domcontentloaded")
        _settle(page, "Heatmap viewer")
        page.locator("[data-testid='stRadio']").get_by_text("Normal", exact=True).first.click()
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
        page.get_by_role("button", name="Inspect").first.click()  # sorted by score: the worst false alarm
        page.get_by_text(re.compile("^Closest normal patch:")).first.wait_for(timeout=180_000)
        page.wait_for_timeout(1500)
        body = check_view(page, "correct-1-why-flagged")
        assert "away from everything normal" in body

        note = page.get_by_label("Note (kept with the feedback)")
        note.fill("glare, not a defect")
        note.press("Enter")
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Mark as normal").click()
        page.get_by_text(re.compile(r"^v2 \(from v1\): \+\d+ bank patches")).first.wait_for(timeout=180_000)
        page.get_by_text(re.compile("^Before / after")).first.wait_for(timeout=180_000)
        page.wait_for_timeout(1500)
        check_view(page, "correct-2-marked-normal")

        page.get_by_role("button", name=re.compile(r"^Undo \(back to v1\)")).click()
        page.get_by_text(re.compile("Back at v1")).first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        check_view(page, "correct-3-undone")
        browser.close()

    versions = RunVersions(root / "runs" / ids[0])
    assert versions.current() == 1 and len(versions.lineage()) == 2  # undone, and v2 kept
    assert versions.get(2).note == "glare, not a defect"


def test_a_stakeholder_walks_from_home_to_every_page_without_typing_a_run_id(empty_server):
    from playwright.sync_api import sync_playwright

    url, root = empty_server
    with sync_playwright() as pw:
        browser, page = _browser(pw)
        for path, title in PAGES:  # a fresh machine: every page says what to do, none shows an error
            page.goto(f"{url}/{path}", wait_until="domcontentloaded")
            _settle(page, title)
            check_view(page, f"empty-{path or 'home'}")
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, "Anomaly Workbench")
        check_view(page, "walk-1-home-empty")
        page.get_by_role("button", name="Train a first model on the demo data").click()
        page.get_by_text("finished in").first.wait_for(timeout=600_000)  # live progress, then the result
        page.wait_for_timeout(1500)
        body = check_view(page, "walk-2-home-first-run-done")
        run_id = re.search(r"\d{8}-\d{6}-[0-9a-f]{4}", body.split("finished in")[0][-200:]).group(0)

        page.get_by_role("button", name="Compare models").click()
        _settle(page, "Compare models")
        body = check_view(page, "walk-3-compare")
        assert run_id in body

        for nav, title, shot in (
            ("Heatmap viewer", "Heatmap viewer", "walk-4-heatmaps"),
            ("Similar cases", "Similar cases", "walk-5-similar-cases"),
        ):
            page.locator("[data-testid='stSidebarNav']").get_by_text(nav).click()
            _settle(page, title)
            body = check_view(page, shot)
            box = page.locator("[data-testid='stMain'] [data-testid='stSelectbox']").first
            # The chosen option is drawn as text or, in a searchable box, as the value of its input.
            picked = box.inner_text() + " " + " ".join(i.input_value() for i in box.locator("input").all())
            assert run_id in picked, f"{title} opened on another run: {picked}"
        browser.close()


def test_an_engineer_reads_a_finished_sweep_as_charts_and_a_recommendation(sweep_root, tmp_path):
    from playwright.sync_api import sync_playwright

    root, sweep_id = sweep_root
    copy = tmp_path / "artifacts"
    shutil.copytree(root, copy)
    proc, url = _serve(copy, autostart=False)
    try:
        with sync_playwright() as pw:
            browser, page = _browser(pw)
            page.goto(f"{url}/compare-models", wait_until="domcontentloaded")
            _settle(page, "Compare models")
            page.get_by_role("tab", name="Sweeps").click()
            page.get_by_text("Recommended: image_size=").first.wait_for(timeout=60_000)
            page.wait_for_timeout(2000)  # the charts paint
            body = check_view(page, "sweep-view")
            box = page.get_by_test_id("stSelectbox").filter(has_text="Sweep").first
            picked = box.inner_text() + " " + " ".join(i.input_value() for i in box.locator("input").all())
            assert sweep_id in picked, picked
            assert "image AUROC against fit s" in body and "Quality against image_size" in body
            assert page.locator("[data-testid='stMain'] .js-plotly-plot").count() >= 3  # front + one per parameter
            browser.close()
    finally:
        _stop(proc)
