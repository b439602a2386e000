"""Background runs: queue them, run them one at a time in separate processes, cancel them.

``submit`` validates and queues; ``ensure_worker`` starts the queue worker if none is alive. The worker
(``aw worker``) takes queued runs oldest first and executes each in a fresh child process
(``aw execute ID``): a crash or out-of-memory kill takes down only that run, the memory of one
run is returned before the next starts, and the app never blocks. Runs are sequential on purpose: on a
2-core CPU two trainings at once are each more than twice as slow. With ``AW_RAY_ADDRESS`` set, the worker
sends the queued runs to that Ray cluster instead, all at once (``core.jobs.cluster``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core import models
from core.config import PROJECT_ROOT, TRAINING_ENV, Settings
from core.config import settings as current_settings
from core.data.datasets import DatasetSpec, check_available
from core.engine import estimate
from core.errors import RunError
from core.jobs import cluster
from core.store.runs import QUEUED, RUNNING, Run, RunRegistry, process_alive

log = logging.getLogger("workbench.jobs")


def submit(
    model: str,
    dataset: DatasetSpec,
    params: dict | None = None,
    seed: int = 0,
    cfg: Settings | None = None,
    start: bool = True,
) -> Run:
    """Validate a run spec (model parameters, weights, data) and queue it. Errors surface now, not later."""
    cfg = cfg or current_settings()
    entry = models.get_entry(model)
    check_available(dataset, cfg)
    # image_size 0 ("follow the data") becomes the size chosen for this dataset; the run records it and why.
    resolved, choice = models.resolve_for_data(entry.name, params, estimate.size_profile(dataset))
    # Building the model checks that weights are reachable (offline: a clear message naming the file).
    models.create_model(entry.name, resolved, cfg)
    extra = {"chosen_for_data": {"params": choice.params, "why": choice.why}} if choice else None
    run = RunRegistry(cfg).create(entry.name, dataset.to_dict(), resolved, seed, extra)
    if start:
        ensure_worker(cfg)
    return run


def _lock_path(cfg: Settings) -> Path:
    return cfg.artifacts / "worker.lock"


def worker_alive(cfg: Settings | None = None) -> bool:
    cfg = cfg or current_settings()
    path = _lock_path(cfg)
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def child_env() -> dict:
    env = dict(os.environ)
    env.update(TRAINING_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def ensure_worker(cfg: Settings | None = None) -> bool:
    """Start the queue worker unless one is running. True if one was started."""
    cfg = cfg or current_settings()
    if worker_alive(cfg):
        return False
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    with open(cfg.artifacts / "worker.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "core", "worker"],
            cwd=PROJECT_ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return True


def worker_loop(cfg: Settings | None = None) -> None:
    """Execute queued runs until none is left. Only one worker holds the lock; others exit at once.
    With ``AW_RAY_ADDRESS`` set the runs go to that Ray cluster instead (core.jobs.cluster)."""
    cfg = cfg or current_settings()
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(cfg), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        registry = RunRegistry(cfg)
        registry.recover_interrupted()
        if cluster.address(cfg):
            cluster.run_queue(cfg)
            return
        while True:
            queued = registry.list(status=QUEUED)
            if not queued:
                return
            run = queued[-1]  # list() is newest first
            child = subprocess.Popen(
                [sys.executable, "-m", "core", "execute", run.id],
                cwd=PROJECT_ROOT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
            )
            child.wait()
            registry.recover_interrupted()  # a child that died leaves its run 'running': mark it failed
            if registry.get(run.id).status == QUEUED:  # the child could not even claim it
                registry.finish(run.id, "failed", error=f"The run process exited with code {child.returncode}.")


def execute_claimed(run_id: str, cfg: Settings | None = None, echo=None, index: bool = True) -> str:
    """Claim a queued run for this process and execute it (the child side of the worker)."""
    from core.engine.training import execute  # torch/anomalib: only where a run executes, not at page start-up

    cfg = cfg or current_settings()
    registry = RunRegistry(cfg)
    if registry.claim(run_id) is None:
        raise RunError(f"Run {run_id} is not queued (status: {registry.get(run_id).status}).")
    return execute(run_id, cfg, echo=echo, index=index)


def cancel(run_id: str, cfg: Settings | None = None, force_after_s: float = 0.0) -> Run:
    """Ask a run to stop. With ``force_after_s`` the process is terminated if it hasn't stopped by then."""
    registry = RunRegistry(cfg or current_settings())
    run = registry.request_cancel(run_id)
    if run.status == RUNNING and force_after_s > 0:
        deadline = time.time() + force_after_s
        while time.time() < deadline and registry.get(run_id).status == RUNNING:
            time.sleep(0.2)
        run = registry.get(run_id)
        # A run on a Ray cluster has the worker's pid: the worker kills its task itself (core.jobs.cluster).
        if run.status == RUNNING and not run.extra.get("ray") and process_alive(run.pid, run.pid_started):
            os.kill(run.pid, signal.SIGTERM)
    return registry.get(run_id)


def rerun(run_id: str, cfg: Settings | None = None) -> Run:
    """Queue a new run with the same model, dataset, parameters and seed."""
    cfg = cfg or current_settings()
    old = RunRegistry(cfg).get(run_id)
    return submit(old.model, DatasetSpec.from_dict(old.dataset), old.params, old.seed, cfg)
