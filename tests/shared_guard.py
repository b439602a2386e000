"""A pytest plugin that fails any test reading the ``../shared`` folder unless it is marked ``real_data``.

A user's machine has no ``../shared``; a test that quietly reads it passes in CI and fails for them. Python's audit
hooks see every ``open``/``listdir``/``scandir`` in the test process, so the first such read is caught in the test that
does it, wherever it is written. ``AW_SHARED_GUARD`` names another folder to guard (the plugin's own test uses it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_EVENTS = {"open", "os.listdir", "os.scandir", "glob.glob"}
_state: dict = {"root": None, "allowed": True, "hits": []}


def _hook(event: str, args: tuple) -> None:
    if event not in _EVENTS or _state["allowed"] or not args:
        return
    target = args[0]
    if isinstance(target, int) or target is None:  # an open file descriptor, or scandir() of the cwd
        return
    try:
        path = os.fsdecode(target)
    except TypeError:
        return
    root = _state["root"]
    inside = path == root or path.startswith(root + os.sep) or os.path.abspath(path).startswith(root + os.sep)
    if inside and len(_state["hits"]) < 5:
        _state["hits"].append(f"{event} {path}")


def guarded_root() -> str:
    from core.config import DEFAULT_SHARED_ROOT

    return str(Path(os.environ.get("AW_SHARED_GUARD") or DEFAULT_SHARED_ROOT).resolve())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_data: needs ../shared; skipped with a reason without it")
    _state["root"] = guarded_root()
    sys.addaudithook(_hook)  # audit hooks cannot be removed: the flag below turns it off between tests


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    _state["allowed"], _state["hits"] = True, []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _state["allowed"] = item.get_closest_marker("real_data") is not None
    _state["hits"] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when == "call":  # reads during set-up (fixtures) and the test itself
        hits, _state["hits"] = _state["hits"], []
        if hits and report.passed:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} read {_state['root']} without @pytest.mark.real_data; a user's machine "
                "has no such folder:\n  " + "\n  ".join(hits)
            )
