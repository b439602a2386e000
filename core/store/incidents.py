"""Unexpected errors: a short message for the user, the whole traceback in ``<artifacts>/errors.log``.

Input a user can fix raises ``WorkbenchError`` (core.errors), whose message is shown as it is. Anything else is a
bug or an environment problem; the guard at each entry (``aw`` commands in core.cli, page actions in pages/ui.py,
the app's script in app.py; runs have theirs in core.engine.training) calls :func:`record`, which writes the
traceback with an incident id to the log and returns one line that names the id, so a person who reports it can be
matched to the details. A user never sees a traceback.

    >>> from core.store import incidents
    >>> try:
    ...     1 / 0
    ... except Exception as exc:
    ...     print(incidents.record(exc, "aw runs"))
    Unexpected error in aw runs (ZeroDivisionError: division by zero). Details: .../errors.log, incident 20261207-...
"""

from __future__ import annotations

import os
import secrets
import time
import traceback
from pathlib import Path

from core.config import Settings
from core.config import settings as current_settings

LOG_NAME = "errors.log"


def log_path(cfg: Settings | None = None) -> Path:
    return (cfg or current_settings()).artifacts / LOG_NAME


def record(exc: BaseException, where: str, cfg: Settings | None = None) -> str:
    """Log ``exc`` with its traceback under a new incident id; return the one-line message for the user."""
    incident = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    text = " ".join(str(exc).split())[:300] or "no message"
    lines = "".join(traceback.format_exception(exc))
    path = log_path(cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"=== incident {incident} · {where} · pid {os.getpid()}\n{lines}\n")
        details = f"Details: {path}, incident {incident}."
    except OSError as log_error:  # a full or read-only disk must not hide the original error
        details = f"(The details could not be logged: {log_error}.)"
    return f"Unexpected error in {where} ({type(exc).__name__}: {text}). {details}"


def read(cfg: Settings | None = None) -> str:
    path = log_path(cfg)
    return path.read_text(encoding="utf-8") if path.is_file() else ""
