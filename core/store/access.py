"""Who may change things, and the audit log of every change.

A stakeholder demo on a shared screen must be able to look at everything and change nothing: with
``AW_READ_ONLY=1`` every write action (queue, cancel or delete a run, import data or weights, export, feedback) is
refused here, in core, whatever page or command asked — hiding the buttons is the pages' part, this is the lock.
Every allowed write is appended to ``<artifacts>/audit.log`` (one JSON line: when, who, what, details), so a
plant can answer "who deleted that run" later.

    >>> from core.store import access
    >>> access.check_write("delete run", run_id="r1")   # raises ReadOnlyError under AW_READ_ONLY=1
    >>> access.read_log()[-1]["action"]
    'delete run'

Who: the dashboard sets the signed-in user for its session (``acting_as``); the CLI is the operating-system user.

Roles: with a login (Streamlit's OIDC ``st.login``), each user is a **viewer** (every page, no launch / import /
delete / export / feedback) or an **engineer** (everything). ``role_of`` maps the provider's claims: the claim named
by ``AW_ROLE_CLAIM`` (default ``roles``; a list, or a string separated by spaces or commas) naming ``engineer``, or
the user's e-mail in the local list ``AW_ENGINEERS`` (comma separated). Everyone else is a viewer, so a new account
can look but not change anything until someone grants the role. A viewer's writes are refused here, like read-only.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import json
import os
import time
from collections.abc import Iterator, Mapping

from core.config import Settings
from core.config import settings as current_settings
from core.errors import ReadOnlyError

_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("aw_actor", default=None)
_ROLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("aw_role", default=None)
_TRUE = {"1", "true", "yes", "on"}
VIEWER, ENGINEER = "viewer", "engineer"


def read_only() -> bool:
    """Whether nothing may be changed here: the whole process (``AW_READ_ONLY=1``, a demo screen) or the signed-in
    user (a viewer)."""
    return os.environ.get("AW_READ_ONLY", "").strip().lower() in _TRUE or _ROLE.get() == VIEWER


def role() -> str | None:
    """The signed-in user's role (None without a login: the CLI, a dashboard on this machine only)."""
    return _ROLE.get()


def role_of(claims: Mapping[str, object]) -> str:
    """``engineer`` or ``viewer`` for an identity provider's claims (see the module docstring)."""
    raw = claims.get(os.environ.get("AW_ROLE_CLAIM", "roles"), ())
    granted = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw or ())
    engineers = {e.strip().lower() for e in os.environ.get("AW_ENGINEERS", "").split(",") if e.strip()}
    email = str(claims.get("email") or "").lower()
    return ENGINEER if ENGINEER in {str(g).lower() for g in granted} or (email and email in engineers) else VIEWER


def actor() -> str:
    """Who is acting: the dashboard's signed-in user, else the operating-system user."""
    name = _ACTOR.get()
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"uid {os.getuid()}"


@contextlib.contextmanager
def acting_as(name: str | None, role: str | None = None) -> Iterator[None]:
    """Attribute the writes inside the block to ``name`` with ``role`` (the dashboard wraps each script run and
    each button callback in this)."""
    tokens = _ACTOR.set(name), _ROLE.set(role)
    try:
        yield
    finally:
        _ACTOR.reset(tokens[0])
        _ROLE.reset(tokens[1])


def ensure_writable(action: str) -> None:
    """Refuse ``action`` in read-only mode, before any work is done (nothing is logged)."""
    if _ROLE.get() == VIEWER:
        raise ReadOnlyError(
            f"Not allowed for a viewer: '{action}'. {actor()} can look at every run, chart and image; launching, "
            "importing, deleting, exporting and feedback need the engineer role (ask whoever runs the dashboard)."
        )
    if read_only():
        raise ReadOnlyError(
            f"Not allowed here: '{action}'. This dashboard is read-only (AW_READ_ONLY=1): you can look at every "
            "run, chart and image, but nothing can be changed."
        )


def check_write(action: str, cfg: Settings | None = None, **details: object) -> None:
    """Refuse ``action`` in read-only mode; otherwise record it in the audit log. Call just before the write."""
    ensure_writable(action)
    cfg = cfg or current_settings()
    entry = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "who": actor(), "action": action, **details}
    if _ROLE.get():
        entry["role"] = _ROLE.get()
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    with open(cfg.artifacts / "audit.log", "a", encoding="utf-8") as log:  # one short line: appends stay whole
        log.write(json.dumps(entry, default=str) + "\n")


def read_log(cfg: Settings | None = None, limit: int | None = None) -> list[dict]:
    """The audit log's entries, oldest first (the last ``limit`` of them)."""
    path = (cfg or current_settings()).artifacts / "audit.log"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for line in lines[-limit:] if limit else lines:
        with contextlib.suppress(json.JSONDecodeError):  # a line cut by a full disk: skip it, keep the rest
            entries.append(json.loads(line))
    return entries
