"""The run registry keeps every run, and a run killed mid-way shows as failed without harming others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from core.errors import RunError
from core.jobs import queue as jobs
from core.store.runs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, RunRegistry


def test_a_queued_run_is_listed_with_its_parameters(artifacts):
    registry = RunRegistry()
    run = registry.create("patchcore", {"kind": "demo", "category": "demo", "root": "/x"}, {"k": 1}, seed=3)
    listed = registry.list()
    assert [r.id for r in listed] == [run.id]
    assert listed[0].status == QUEUED and listed[0].params == {"k": 1} and listed[0].seed == 3


def test_unknown_run_ids_get_a_clear_error(artifacts):
    with pytest.raises(RunError, match="No run with id 'nope'"):
        RunRegistry().get("nope")


def test_cancelling_a_queued_run_cancels_it_at_once(artifacts):
    registry = RunRegistry()
    run = registry.create("patchcore", {"category": "demo"}, {}, 0)
    assert registry.request_cancel(run.id).status == CANCELLED


def test_a_run_killed_with_sigkill_shows_as_failed_and_finished_runs_are_untouched(artifacts):
    registry = RunRegistry()
    finished = registry.create("patchcore", {"category": "a"}, {}, 0)
    registry.claim(finished.id)
    registry.finish(finished.id, DONE, metrics={"image_auroc": 0.97})

    victim = registry.create("patchcore", {"category": "b"}, {}, 0)
    # A real process claims the run, reports progress, then is killed with SIGKILL mid-way.
    code = (
        "import time, sys; from core.store.runs import RunRegistry; r = RunRegistry(); "
        f"r.claim('{victim.id}'); r.set_progress('{victim.id}', 'coreset selection', 0.4); "
        "print('claimed', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=jobs.child_env())
    assert proc.stdout.readline().strip() == b"claimed"
    assert registry.get(victim.id).status == RUNNING
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert RunRegistry().recover_interrupted() == [victim.id]
    failed = registry.get(victim.id)
    assert failed.status == FAILED and "coreset selection" in failed.error
    kept = registry.get(finished.id)
    assert kept.status == DONE and kept.metrics == {"image_auroc": 0.97}


def test_deleting_a_run_removes_its_row_and_folder(artifacts):
    registry = RunRegistry()
    run = registry.create("patchcore", {"category": "a"}, {}, 0)
    (registry.run_dir(run.id) / "x.txt").write_text("x")
    registry.delete(run.id)
    assert registry.list() == [] and not registry.run_dir(run.id).exists()


def test_a_damaged_registry_file_is_a_clear_message_on_the_command_line_and_in_the_app(artifacts, capsys):
    from streamlit.testing.v1 import AppTest

    from core.cli import main
    from core.config import PROJECT_ROOT, settings

    (settings().artifacts / "registry.sqlite").write_bytes(b"not a database, a damaged copy" * 40)
    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The run registry") and "is damaged" in err and "Traceback" not in err

    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert any("is damaged" in e.value for e in at.error)
