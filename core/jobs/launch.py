"""Launching runs from the pages: the first demo run, re-runs, uploaded zips, and keeping the queue moving.

Runs are queued with ``start=False`` and the worker is started once afterwards, so a batch of N runs starts
one worker instead of racing N starts. ``AW_AUTOSTART_WORKER=0`` stops the pages from starting a worker at
all (for a worker managed elsewhere, ``aw worker``, and for tests that only check queuing).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings
from core.config import settings as current_settings
from core.data import datasets, importing
from core.errors import WeightsError
from core.jobs import queue as jobs
from core.models import weights
from core.store.runs import DONE, QUEUED, Run, RunRegistry


def autostart_enabled() -> bool:
    return os.environ.get("AW_AUTOSTART_WORKER", "1").strip().lower() not in {"0", "false", "no", "off"}


def start_worker(cfg: Settings | None = None) -> bool:
    """Start the queue worker if allowed and none is alive. True if one was started."""
    return jobs.ensure_worker(cfg or current_settings()) if autostart_enabled() else False


def keep_queue_moving(cfg: Settings | None = None) -> bool:
    """Queued runs with no live worker (it exited, or the machine restarted): start one."""
    cfg = cfg or current_settings()
    if RunRegistry(cfg).list(status=QUEUED, limit=1) and not jobs.worker_alive(cfg):
        return start_worker(cfg)
    return False


def queue(
    model: str, spec: datasets.DatasetSpec, params: dict | None = None, seed: int = 0, cfg: Settings | None = None
) -> Run:
    """Validate and queue one run without starting the worker (call ``start_worker`` after a batch)."""
    return jobs.submit(model, spec, params, seed, cfg or current_settings(), start=False)


def rerun(run_id: str, cfg: Settings | None = None) -> Run:
    """``jobs.rerun`` that honours AW_AUTOSTART_WORKER."""
    cfg = cfg or current_settings()
    if autostart_enabled():
        return jobs.rerun(run_id, cfg)
    old = RunRegistry(cfg).get(run_id)
    return queue(old.model, datasets.DatasetSpec.from_dict(old.dataset), old.params, old.seed, cfg)


# ---- the first run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstRunPlan:
    params: dict | None  # PatchCore parameters; None when no pretrained backbone can be had here
    explanation: str


def first_run_plan(cfg: Settings | None = None) -> FirstRunPlan:
    """PatchCore on the demo data with the best backbone this machine can use (or why none can be used)."""
    cfg = cfg or current_settings()
    usable = weights.available_backbones(cfg)
    if usable:
        best = weights.default_backbone(cfg)
        best = best if best in usable else usable[0]
        how = {"local": "found on disk", "cached": "in the download cache", "download": "downloaded on first use"}[
            weights.backbone_status(best, cfg)
        ]
        return FirstRunPlan(
            {"backbone": best},
            f"PatchCore with the ImageNet-pretrained backbone **{best}** ({how}) on the synthetic demo dataset.",
        )
    searched = ", ".join(str(p) for p in cfg.weights_search_path)
    return FirstRunPlan(
        None,
        (
            "No pretrained backbone weights are available on this machine"
            + (" and it is offline" if cfg.offline else "")
            + f" (looked in: {searched}). PatchCore describes image patches with an ImageNet-pretrained CNN; "
            "without one its scores mean nothing. To train a real model, import weights "
            "(`aw weights import <timm folder>`, e.g. tf_efficientnet_lite0 with config.json + "
            "model.safetensors) or connect to the internet."
        ),
    )


def queue_first_run(plan: FirstRunPlan, cfg: Settings | None = None) -> Run:
    cfg = cfg or current_settings()
    if plan.params is None:
        raise WeightsError(plan.explanation)
    run = queue("patchcore", datasets.demo(cfg), plan.params, 0, cfg)
    start_worker(cfg)
    return run


# ---- uploads and estimates -------------------------------------------------------------------------------


def import_zip_bytes(
    name: str, data: bytes, cfg: Settings | None = None, replace: bool = False, filename: str | None = None
) -> importing.ImportReport:
    """Import an uploaded zip (bytes from the browser) as an own dataset; the temporary copy is removed."""
    cfg = cfg or current_settings()
    folder = cfg.datasets_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=folder, prefix=".upload-"))
    tmp = tmp_dir / Path(filename or f"{name}.zip").name
    try:
        tmp.write_bytes(data)
        return importing.import_zip(name, tmp, replace=replace, cfg=cfg)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


# ---- retraining after a training-set audit ---------------------------------------------------------------


def retrain_without_excluded(spec: datasets.DatasetSpec, cfg: Settings | None = None) -> Run:
    """Queue a run on ``spec``'s dataset with its exclusions as recorded now (core.data.exclusions): the model,
    parameters and seed of the latest finished run on that dataset, else the first-run PatchCore plan."""
    cfg = cfg or current_settings()
    fresh = spec.with_recorded_exclusions(cfg)
    same = (spec.kind, spec.category, spec.root)
    latest = next(
        (
            r
            for r in RunRegistry(cfg).list(status=DONE)
            if (r.dataset.get("kind"), r.dataset.get("category"), r.dataset.get("root")) == same
        ),
        None,
    )
    if latest is not None:
        run = queue(latest.model, fresh, latest.params, latest.seed, cfg)
    else:
        plan = first_run_plan(cfg)
        if plan.params is None:
            raise WeightsError(plan.explanation)
        run = queue("patchcore", fresh, plan.params, 0, cfg)
    start_worker(cfg)
    return run
