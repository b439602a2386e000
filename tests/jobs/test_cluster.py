"""Runs on a real Ray cluster: a head started on 127.0.0.1 for this module, the product's worker pointed at it
with ``AW_RAY_ADDRESS``, exactly as a user would. No mocks. Skipped (with the reason) only where Ray can't start.

A demo PatchCore run goes through the cluster and lands like a local run; a run is cancelled from the registry;
a Ray worker process is killed mid-run and only that run fails, with a reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT
from core.data import datasets
from core.jobs import queue as jobs
from core.store.artifacts import RunArtifacts
from core.store.runs import CANCELLED, DONE, FAILED, RUNNING, RunRegistry
from tests.conftest import FAST_PATCHCORE, _offline_env

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs; its address, or a skip saying why it could not start.

    Started with ``--block`` in its own process group and stopped by ending that group, so a Ray cluster that
    someone else runs on this machine is left alone (``ray stop`` would stop every local Ray process)."""
    pytest.importorskip("ray", reason="ray is not installed")
    if RAY is None:
        pytest.skip("the ray command is not installed")
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and head.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        if head.poll() is not None or time.time() >= deadline:
            pytest.skip(
                f"a local Ray head could not start: {(head.stdout.read() if head.poll() is not None else '')[-500:]}"
            )
        time.sleep(3)  # the GCS answers before the raylet has registered the node's CPUs
        yield f"127.0.0.1:{port}"
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cluster_env(ray_head, artifacts, monkeypatch):
    monkeypatch.setenv("AW_RAY_ADDRESS", ray_head)
    monkeypatch.setenv("AW_RAY_CPUS", "1")
    return {**os.environ, **_offline_env(artifacts), "AW_RAY_ADDRESS": ray_head, "AW_RAY_CPUS": "1"}


def _worker(env) -> subprocess.Popen:
    """The product's queue worker, as the app starts it (it sends the queue to the cluster)."""
    return subprocess.Popen(
        [sys.executable, "-m", "core", "worker"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _demo():
    return datasets.demo(n_train=8, n_test_good=3, n_test_per_defect=2, size=128, seed=1)


def _long_run(spec) -> str:
    """An EfficientAD pipeline run long enough (400 steps) to be caught while it trains."""
    return jobs.submit(
        "efficientad",
        spec,
        {"teacher": "untrained", "max_steps": 400, "image_size": 256, "imagenet_dir": str(spec.path / "train")},
        start=False,
    ).id


def test_a_sweep_sent_to_the_cluster_runs_side_by_side_and_lands_like_local_runs(cluster_env):
    from core.engine.inference import LoadedModel
    from core.similarity.vectorstore import VectorStore

    spec = _demo()
    run = jobs.submit("patchcore", spec, FAST_PATCHCORE, start=False)
    other = jobs.submit("padim", spec, {"image_size": 128}, start=False)
    worker = _worker(cluster_env)
    out, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, out[-3000:]
    both = [RunRegistry().get(i) for i in (run.id, other.id)]
    assert [r.status for r in both] == [DONE, DONE], [(r.status, r.error) for r in both]
    # one CPU each on a 2-CPU head: the two ran at the same time, not one after the other
    assert max(r.extra["ray"]["started_at"] for r in both) < min(r.finished_at for r in both)
    done = RunRegistry().get(run.id)
    assert done.status == DONE, (done.error, out[-3000:])
    assert done.extra["ray"]["node_id"] and done.extra["ray"]["task_pid"] != worker.pid  # it ran as a Ray task
    assert done.metrics["image_auroc"] >= 0.9 and done.latency["e2e_ms_p50"] > 0
    art = RunArtifacts(RunRegistry().run_dir(run.id))
    assert art.checkpoint.is_file() and len(art.records) == len(datasets.test_samples(spec))
    assert "phase: indexing" in art.log_path.read_text()
    assert VectorStore.open().count(run.id) > 0  # its similarity index was pushed into this machine's store
    model = LoadedModel(RunRegistry().run_dir(run.id))  # the viewer and uploads can use it
    assert len(model.predict([art.records.path.iloc[0]])) == 1


def test_cancelling_a_run_on_the_cluster_stops_it(cluster_env):
    run_id = _long_run(_demo())
    worker = _worker(cluster_env)
    try:
        _wait(
            lambda: (r := RunRegistry().get(run_id)).phase == "training" and (r.progress or 0) > 0,
            300,
            "the remote run to report training progress",
        )
        jobs.cancel(run_id)
        worker.wait(timeout=300)
    finally:
        worker.kill()
    run = RunRegistry().get(run_id)
    assert run.status == CANCELLED, (run.status, run.error)


def test_a_worker_killed_mid_run_fails_that_run_with_a_reason_and_loses_nothing_else(cluster_env):
    spec = _demo()
    keep = jobs.submit("patchcore", spec, FAST_PATCHCORE, start=False)
    RunRegistry().finish(keep.id, FAILED, error="an earlier run")  # something already in the registry
    run_id = _long_run(spec)
    worker = _worker(cluster_env)
    try:
        info = _wait(
            lambda: (
                RunRegistry().get(run_id).extra.get("ray") if RunRegistry().get(run_id).phase == "training" else None
            ),
            300,
            "the remote run to start training",
        )
        os.kill(info["task_pid"], signal.SIGKILL)  # the Ray worker process running the task dies
        worker.wait(timeout=300)
    finally:
        worker.kill()
    run = RunRegistry().get(run_id)
    assert run.status == FAILED and "Ray worker running this run died" in run.error, (run.status, run.error)
    assert RunRegistry().get(keep.id).error == "an earlier run"
    assert not RunRegistry().list(status=RUNNING)
