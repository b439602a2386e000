"""An unexpected error: one line for the user naming an incident, the traceback in <artifacts>/errors.log."""

from __future__ import annotations

import re

from core.store import incidents


def test_an_unexpected_error_is_one_line_and_its_traceback_is_logged_under_the_same_incident(artifacts):
    try:
        {}["missing"]
    except KeyError as exc:
        message = incidents.record(exc, "aw runs")

    assert "\n" not in message and message.startswith("Unexpected error in aw runs (KeyError: 'missing').")
    incident = re.search(r"incident (\d{8}-\d{6}-[0-9a-f]{4})", message).group(1)
    log = incidents.read()
    assert f"=== incident {incident} · aw runs" in log
    assert "Traceback (most recent call last)" in log and "KeyError: 'missing'" in log


def test_a_log_that_cannot_be_written_still_gives_the_message(artifacts, tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the artifacts folder should be")
    monkeypatch.setenv("AW_ARTIFACTS", str(blocked))
    message = incidents.record(ValueError("bad"), "the dashboard")
    assert message.startswith("Unexpected error in the dashboard (ValueError: bad).")
    assert "could not be logged" in message
