"""Runs on a Ray cluster: when ``AW_RAY_ADDRESS`` is set, the queue worker sends each queued run to the cluster.

Without ``AW_RAY_ADDRESS`` nothing here is used: the local worker (``core.jobs.queue``) runs one run at a time in a
child process, as before.

With it, the worker (still one process on the machine that holds the run registry, started by the app or by
``aw worker``) connects to the cluster and submits every queued run at once as a Ray task with a
resource request (``AW_RAY_CPUS``, default 2, ``AW_RAY_GPUS``, default 0): a sweep of models x categories fans out
over the cluster's nodes as far as their resources allow, and Ray queues the rest.

What a node does, and what travels (nothing assumes a shared artifacts folder):

- The task runs ``core.engine.training.execute`` against a private scratch folder on the node: a scratch run registry
  holding a copy of the run's row, the run's outputs, and a scratch similarity index.
- Progress, phase, metrics and every other registry write are also sent to a ``RunReporter`` actor that lives in
  the worker process, which writes them to the real registry: the Training page follows a remote run exactly as
  a local one. The actor also carries cancellation back: the task's cancellation check asks it.
- When the task ends it returns its run folder and its similarity index as one archive; the worker unpacks the
  folder into ``artifacts/runs/<id>`` and pushes the index into the real store (``VectorStore.push``), so the run
  lands in the registry exactly as a local run does.
- The machine that runs the app and its worker joins the cluster as a node (``ray start --address=<head>``,
  ``--num-cpus=0`` if it should train nothing itself): the reporter runs there, next to the registry file.
- Code travels with the task (Ray ``py_modules``: the ``core`` package), so nodes run this version of it. Each node
  needs the same Python environment (``make setup``) and **the data at the same paths** (MVTec root, imported
  datasets): a run's records name its images by path, for the node that trains and for the viewer alike.

Failures: a task that raises is a failed run with its message; a node or worker process that dies mid-run
(``WorkerCrashedError``, ``NodeDiedError``) is a failed run saying so. Nothing else in the registry is touched.
Cancelling asks the task to stop at its next progress report; if it has not stopped after ``CANCEL_GRACE_S``, the
task is killed (``ray.cancel(force=True)``).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from core.config import PROJECT_ROOT, TRAINING_ENV, Settings
from core.config import settings as current_settings
from core.store.runs import CANCELLED, FAILED, QUEUED, RunRegistry

log = logging.getLogger("workbench.cluster")

CANCEL_GRACE_S = 30.0
POLL_S = 1.0


def address(cfg: Settings | None = None) -> str | None:
    """The Ray cluster runs go to (``AW_RAY_ADDRESS``), or None for the local worker."""
    value = os.environ.get("AW_RAY_ADDRESS", "").strip()
    return value or None


def resources() -> dict:
    return {
        "num_cpus": float(os.environ.get("AW_RAY_CPUS", "2")),
        "num_gpus": float(os.environ.get("AW_RAY_GPUS", "0")),
    }


def connect(addr: str):
    """Connect this process to the cluster once, shipping the ``core`` package with every task."""
    import ray  # ray: ~0.5 s to import, only for a cluster run (AW_RAY_ADDRESS)

    if not ray.is_initialized():
        ray.init(
            address=addr,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env={
                "py_modules": [str(PROJECT_ROOT / "core")],
                "env_vars": {**TRAINING_ENV, "AW_RAY_ADDRESS": ""},
            },
        )
    return ray


# ---------------------------------------------------------------------------------------- the task side


class _ReportingRegistry(RunRegistry):
    """The scratch registry on a node: writes locally (``execute`` reads back what it wrote) and forwards every
    write about the run to the worker's reporter; cancellation is the reporter's to say."""

    def __init__(self, cfg: Settings, run_id: str, reporter) -> None:
        super().__init__(cfg)
        self._run_id, self._reporter = run_id, reporter

    def update(self, run_id: str, **fields) -> None:
        super().update(run_id, **fields)
        self._reporter.update.remote(run_id, fields)

    def set_progress(self, run_id: str, phase: str, progress: float, message: str = "") -> None:
        super().set_progress(run_id, phase, progress, message)
        self._reporter.progress.remote(run_id, phase, progress, message)

    def cancel_requested(self, run_id: str) -> bool:
        import ray  # ray: only on a cluster node

        return bool(ray.get(self._reporter.cancel_requested.remote(run_id), timeout=30))


def _archive(*folders: tuple[str, Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, folder in folders:
            if folder.exists():  # files and folders only (a cancelled fit leaves Lightning's absolute links)
                tar.add(folder, arcname=name, filter=lambda m: None if m.issym() or m.islnk() else m)
    return buf.getvalue()


def execute_on_node(run_row: dict, cfg_dict: dict, reporter) -> dict:
    """Body of the Ray task: execute one run in a scratch folder; return its status and outputs as an archive."""
    import ray  # ray: only on a cluster node

    from core.engine import training  # torch/anomalib: only on the node that trains, not at page start-up

    scratch = Path(tempfile.mkdtemp(prefix="aw-ray-run-"))
    try:
        # The worker's weights folder where this node has it (a shared mount, or the same machine), else a scratch
        # one: the bundled EfficientNet-Lite0 unpacks there from the node's own install.
        weights = Path(cfg_dict["weights_dir"])
        cfg = dataclasses.replace(
            Settings(**cfg_dict),
            artifacts=scratch,
            qdrant_url=None,
            weights_dir=weights if weights.is_dir() else scratch / "weights",
        )
        registry = RunRegistry(cfg)
        run_id = run_row["id"]
        registry.create_from_record(run_row)
        registry.claim(run_id)
        reporter.started.remote(run_id, os.getpid(), ray.get_runtime_context().get_node_id())
        status = training.execute(run_id, cfg, registry=_ReportingRegistry(cfg, run_id, reporter))
        return {"status": status, "archive": _archive(("run", cfg.run_dir(run_id)), ("qdrant", cfg.qdrant_path))}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _reporter_class():
    import ray  # ray: optional, only for a cluster run

    @ray.remote(num_cpus=0)
    class RunReporter:
        """Lives in the worker process's cluster connection; the one writer of the real registry for remote runs."""

        def __init__(self, cfg_dict: dict) -> None:
            self.registry = RunRegistry(Settings(**cfg_dict))
            self.cancel: set[str] = set()
            self.nodes: dict[str, dict] = {}

        def started(self, run_id: str, pid: int, node: str) -> None:
            self.nodes[run_id] = {"pid": pid, "node": node}
            self.registry.merge_extra(run_id, ray={"node_id": node, "task_pid": pid, "started_at": time.time()})

        def where(self, run_id: str) -> dict | None:
            return self.nodes.get(run_id)

        def update(self, run_id: str, fields: dict) -> None:
            # Status is the worker's to set when the outputs have landed; the run keeps the worker's pid.
            fields = {k: v for k, v in fields.items() if k not in ("status", "finished_at", "pid", "pid_started")}
            if "extra" in fields:  # the node's extra lacks what the worker added ("ray"): merge, don't replace
                fields["extra"] = {**self.registry.get(run_id).extra, **fields["extra"]}
            if fields:
                self.registry.update(run_id, **fields)

        def progress(self, run_id: str, phase: str, progress: float, message: str) -> None:
            self.registry.set_progress(run_id, phase, progress, message)

        def request_cancel(self, run_id: str) -> None:
            self.cancel.add(run_id)

        def cancel_requested(self, run_id: str) -> bool:
            return run_id in self.cancel

    return RunReporter


# ---------------------------------------------------------------------------------------- the worker side


def _cfg_dict(cfg: Settings) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def _land(registry: RunRegistry, cfg: Settings, run_id: str, result: dict) -> str:
    """Unpack a finished task's outputs into the artifacts folder and its index into the store."""
    from core.similarity.vectorstore import VectorStore  # qdrant_client: ~1.5 s, not at page start-up

    tmp = Path(tempfile.mkdtemp(prefix=".ray-landing-", dir=cfg.artifacts))
    try:
        with tarfile.open(fileobj=io.BytesIO(result["archive"]), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        target = registry.run_dir(run_id)
        shutil.rmtree(target, ignore_errors=True)
        if (tmp / "run").is_dir():
            shutil.move(str(tmp / "run"), str(target))
        if (tmp / "qdrant").is_dir():
            VectorStore(path=tmp / "qdrant").push(VectorStore.open(cfg))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result["status"]


def _failure_message(exc: BaseException) -> str:
    import ray.exceptions as rex  # ray: optional, only for a cluster run

    if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.ActorDiedError)):
        return (
            f"The Ray worker running this run died ({type(exc).__name__}): the node or its process was killed, "
            "crashed or ran out of memory. Re-run it to try again."
        )
    if isinstance(exc, rex.TaskCancelledError):
        return "cancelled by the user"
    cause = getattr(exc, "cause", None) or exc
    return f"The run failed on the Ray cluster: {type(cause).__name__}: {str(cause).splitlines()[0][:300]}"


def run_queue(cfg: Settings | None = None) -> None:
    """Send every queued run to the cluster and land each as it finishes, until nothing is queued or running."""
    cfg = cfg or current_settings()
    ray = connect(address(cfg))
    registry = RunRegistry(cfg)
    # The reporter writes the registry file, so it runs on this machine's node (the app's machine joins the
    # cluster as a node, e.g. `ray start --address=<head> --num-cpus=0`).
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    reporter = _reporter_class().options(scheduling_strategy=here).remote(_cfg_dict(cfg))
    task = ray.remote(max_retries=0, **resources())(execute_on_node)
    pending: dict = {}  # object ref -> run id
    cancel_asked: dict[str, float] = {}
    while True:
        for run in reversed(registry.list(status=QUEUED)):  # oldest first
            if registry.claim(run.id) is None:
                continue
            registry.set_progress(run.id, "waiting for the cluster", 0.0, f"sent to Ray at {address(cfg)}")
            ref = task.remote(registry.record(run.id), _cfg_dict(cfg), reporter)
            pending[ref] = run.id
            log.info("run %s sent to the Ray cluster", run.id)
        if not pending:
            return
        done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for ref in done:
            run_id = pending.pop(ref)
            cancel_asked.pop(run_id, None)
            try:
                status = _land(registry, cfg, run_id, ray.get(ref))
                registry.finish(run_id, status, error=registry.get(run_id).error or "")
            except Exception as exc:  # noqa: BLE001 - any task failure ends the run, never the worker
                message = _failure_message(exc)
                status = CANCELLED if message == "cancelled by the user" else FAILED
                registry.finish(
                    run_id,
                    status,
                    error="" if status == CANCELLED else message,
                    message=message if status == CANCELLED else "",
                )
            log.info("run %s: %s", run_id, registry.get(run_id).status)
        now = time.time()
        for ref, run_id in pending.items():  # cancellation: ask the task, then kill it after a grace period
            if run_id not in cancel_asked and registry.cancel_requested(run_id):
                cancel_asked[run_id] = now
                reporter.request_cancel.remote(run_id)
            elif run_id in cancel_asked and now - cancel_asked[run_id] > CANCEL_GRACE_S:
                ray.cancel(ref, force=True)
                cancel_asked[run_id] = float("inf")
