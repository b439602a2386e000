"""The run registry: every run ever started, in SQLite under artifacts/.

A run = dataset + model + parameters + seed. Its life: queued → running → done | failed | cancelled.
Workers write progress and results here; pages and the CLI read it. SQLite in WAL mode lets one writer and
many readers work at once, and each update is one short transaction, so a worker killed mid-way (even
``kill -9``) can at worst leave its own row 'running' — ``recover_interrupted`` turns such rows into
'failed' on the next start, by checking whether the recorded process still exists.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from core.config import Settings
from core.config import settings as current_settings
from core.errors import RunError
from core.store import access

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
JSON_FIELDS = ("dataset", "params", "metrics", "timings", "latency", "environment", "retrieval", "extra")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    phase TEXT DEFAULT '',
    progress REAL DEFAULT 0,
    message TEXT DEFAULT '',
    error TEXT DEFAULT '',
    metrics TEXT DEFAULT '{}',
    timings TEXT DEFAULT '{}',
    latency TEXT DEFAULT '{}',
    environment TEXT DEFAULT '{}',
    retrieval TEXT DEFAULT '{}',
    extra TEXT DEFAULT '{}',
    pid INTEGER,
    pid_started REAL,
    heartbeat REAL,
    cancel_requested INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""


@dataclass
class Run:
    id: str
    created_at: float
    status: str
    model: str
    dataset: dict
    params: dict
    seed: int
    started_at: float | None = None
    finished_at: float | None = None
    phase: str = ""
    progress: float = 0.0
    message: str = ""
    error: str = ""
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    retrieval: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    pid: int | None = None
    pid_started: float | None = None
    heartbeat: float | None = None
    cancel_requested: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def category(self) -> str:
        return self.dataset.get("category", "")

    @property
    def elapsed_s(self) -> float | None:
        if not self.started_at:
            return None
        return (self.finished_at or time.time()) - self.started_at

    @property
    def eta_s(self) -> float | None:
        """Remaining time for the current phase, from its progress so far (None when unknown)."""
        if self.status != RUNNING or not self.progress or self.progress <= 0.01:
            return None
        phase_start = self.extra.get("phase_started_at") or self.started_at
        spent = time.time() - phase_start
        return spent * (1 - self.progress) / self.progress

    @property
    def title(self) -> str:
        return f"{self.id} · {self.model} · {self.dataset.get('category', '?')}"


def _row_to_run(row: sqlite3.Row) -> Run:
    data = dict(row)
    for key in JSON_FIELDS:
        data[key] = json.loads(data[key] or "{}")
    return Run(**data)


def new_run_id() -> str:
    # Sortable by time, short enough to type: 20261128-0342-3f9a
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


def process_alive(pid: int | None, started: float | None) -> bool:
    """True if ``pid`` is the very process that registered (pids are reused after a crash)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class RunRegistry:
    def __init__(self, cfg: Settings | None = None) -> None:
        self.cfg = cfg or current_settings()
        self.path = self.cfg.registry_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL mode is a property of the file, set once here. Switching it needs a moment alone with the file,
        # and SQLite does not wait for that (no busy timeout), so two processes starting together retry.
        for attempt in range(100):
            try:
                with self._connect() as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise RunError(
                    f"The run registry {self.path} is damaged ({exc}). Restore it from a backup, or move it away to "
                    "start an empty registry; the run folders beside it are untouched."
                ) from exc
            raise
        finally:
            db.close()

    # -- create / read ------------------------------------------------------------------------------
    def create(self, model: str, dataset: dict, params: dict, seed: int = 0, extra: dict | None = None) -> Run:
        access.check_write("queue run", self.cfg, model=model, dataset=dataset.get("category"), params=params)
        run = Run(
            id=new_run_id(),
            created_at=time.time(),
            status=QUEUED,
            model=model,
            dataset=dataset,
            params=params,
            seed=int(seed),
            extra=dict(extra or {}),
        )
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, created_at, status, model, dataset, params, seed, extra) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (
                    run.id,
                    run.created_at,
                    run.status,
                    model,
                    json.dumps(dataset),
                    json.dumps(params),
                    run.seed,
                    json.dumps(run.extra),
                ),
            )
        self.run_dir(run.id).mkdir(parents=True, exist_ok=True)
        return run

    def record(self, run_id: str) -> dict:
        """A run's stored row as plain values (JSON fields still as text): what travels to another node."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"No run with id '{run_id}'. `aw runs` lists the runs.")
        return dict(row)

    def create_from_record(self, record: dict) -> Run:
        """Queue a run with the id, time and settings of another registry's ``record`` (a Ray node's own
        scratch registry, which then executes it as if it had been queued there)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, created_at, status, model, dataset, params, seed) VALUES (?,?,?,?,?,?,?)",
                (
                    record["id"],
                    record["created_at"],
                    QUEUED,
                    record["model"],
                    record["dataset"],
                    record["params"],
                    record["seed"],
                ),
            )
        self.run_dir(record["id"]).mkdir(parents=True, exist_ok=True)
        return self.get(record["id"])

    def get(self, run_id: str) -> Run:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"No run with id '{run_id}'. `aw runs` lists the runs.")
        return _row_to_run(row)

    def list(self, status: str | tuple[str, ...] | None = None, limit: int | None = None) -> list[Run]:
        query, args = "SELECT * FROM runs", []
        if status:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            query += f" WHERE status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        query += " ORDER BY created_at DESC"
        if limit:
            query += f" LIMIT {int(limit)}"
        with self._connect() as db:
            return [_row_to_run(r) for r in db.execute(query, args).fetchall()]

    def run_dir(self, run_id: str) -> Path:
        return self.cfg.run_dir(run_id)

    # -- updates -------------------------------------------------------------------------------------
    def update(self, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols, args = [], []
        for key, value in fields.items():
            cols.append(f"{key} = ?")
            args.append(json.dumps(value) if key in JSON_FIELDS else value)
        with self._connect() as db:
            cur = db.execute(f"UPDATE runs SET {', '.join(cols)} WHERE id = ?", (*args, run_id))
            if cur.rowcount == 0:
                raise RunError(f"No run with id '{run_id}'.")

    def merge_extra(self, run_id: str, **values: Any) -> None:
        extra = self.get(run_id).extra
        extra.update(values)
        self.update(run_id, extra=extra)

    def set_progress(self, run_id: str, phase: str, progress: float, message: str = "") -> None:
        now = time.time()
        with self._connect() as db:
            row = db.execute("SELECT phase, extra FROM runs WHERE id = ?", (run_id,)).fetchone()
            extra = json.loads(row["extra"] or "{}") if row else {}
            if row and row["phase"] != phase:
                extra["phase_started_at"] = now
            db.execute(
                "UPDATE runs SET phase = ?, progress = ?, message = ?, heartbeat = ?, extra = ? WHERE id = ?",
                (phase, float(progress), message, now, json.dumps(extra), run_id),
            )

    def claim(self, run_id: str, pid: int | None = None) -> Run | None:
        """Atomically move a queued run to 'running' for this process (None if it isn't queued)."""
        pid = pid or os.getpid()
        started = psutil.Process(pid).create_time()
        now = time.time()
        with self._connect() as db:
            cur = db.execute(
                "UPDATE runs SET status = ?, started_at = ?, pid = ?, pid_started = ?, heartbeat = ?, phase = ?, "
                "progress = 0 WHERE id = ? AND status = ?",
                (RUNNING, now, pid, started, now, "starting", run_id, QUEUED),
            )
        return self.get(run_id) if cur.rowcount == 1 else None

    def finish(self, run_id: str, status: str, error: str = "", **fields: Any) -> None:
        self.update(
            run_id,
            status=status,
            error=error,
            finished_at=time.time(),
            progress=1.0 if status == DONE else self.get(run_id).progress,
            **fields,
        )

    def request_cancel(self, run_id: str) -> Run:
        """Queued runs are cancelled at once; a running one stops at its next progress report."""
        access.check_write("cancel run", self.cfg, run_id=run_id)
        run = self.get(run_id)
        if run.status == QUEUED:
            self.finish(run_id, CANCELLED, message="cancelled before it started")
        elif run.status == RUNNING:
            self.update(run_id, cancel_requested=1, message="cancelling…")
        return self.get(run_id)

    def cancel_requested(self, run_id: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def delete(self, run_id: str) -> None:
        """Remove the run, its artifacts folder and (if any) its similarity-index points."""
        access.check_write("delete run", self.cfg, run_id=run_id)
        run = self.get(run_id)
        if run.status == RUNNING and process_alive(run.pid, run.pid_started):
            raise RunError(f"Run {run_id} is still running; cancel it first.")
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def recover_interrupted(self) -> list[str]:
        """Mark runs whose worker died (crash, kill -9, reboot) as failed. Returns their ids."""
        recovered = []
        for run in self.list(status=RUNNING):
            if not process_alive(run.pid, run.pid_started):
                self.finish(
                    run.id,
                    FAILED,
                    error=(
                        f"Interrupted during '{run.phase or 'start-up'}': the worker process (pid {run.pid}) ended "
                        "without finishing the run (killed, crashed or out of memory). Re-run it to try again."
                    ),
                )
                recovered.append(run.id)
        return recovered
