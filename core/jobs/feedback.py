"""Retrain with feedback: for models without a memory bank, a new run that trains on the accepted normals.

A PatchCore run learns a false alarm at once (core.engine.feedback adds the image's patches to its bank). Other
models (PaDiM, EfficientAD, ...) cannot: their normal marks are kept with the run, and ``retrain_with_feedback``
queues a run with the same model, parameters and seed whose training set is the dataset's plus those images, and
whose test set leaves them out (a model is not evaluated on what it was taught).

    from core.jobs.feedback import retrain_with_feedback
    new_run = retrain_with_feedback("RUN_ID")   # queued; the worker starts unless AW_AUTOSTART_WORKER=0
"""

from __future__ import annotations

from dataclasses import replace

from core.config import Settings
from core.config import settings as current_settings
from core.data.datasets import DatasetSpec
from core.errors import WorkbenchError
from core.jobs import launch
from core.store import access
from core.store.runs import Run, RunRegistry
from core.store.versions import RunVersions


def accepted_normals(run_id: str, cfg: Settings | None = None) -> list[str]:
    """The run's images marked normal, oldest first, each once."""
    run_dir = RunRegistry(cfg or current_settings()).run_dir(run_id)
    marks = [f.image for f in RunVersions(run_dir).feedback() if f.kind == "normal"]
    return list(dict.fromkeys(marks))


def retrain_with_feedback(run_id: str, cfg: Settings | None = None, start: bool = True) -> Run:
    """Queue a run of ``run_id``'s model whose training set includes the images marked normal on it."""
    cfg = cfg or current_settings()
    registry = RunRegistry(cfg)
    run = registry.get(run_id)
    normals = accepted_normals(run_id, cfg)
    if not normals:
        raise WorkbenchError(f"Run {run_id} has no images marked normal: there is nothing to retrain with.")
    access.check_write("feedback: retrain with feedback", run=run_id, images=len(normals))
    spec = DatasetSpec.from_dict(run.dataset)
    spec = replace(
        spec,
        extra_train=tuple(dict.fromkeys([*spec.extra_train, *normals])),
        exclude_test=tuple(dict.fromkeys([*spec.exclude_test, *normals])),
    )
    new = launch.queue(run.model, spec, run.params, run.seed, cfg)
    registry.merge_extra(new.id, retrained_from=run_id, feedback_normals=normals)
    RunVersions(registry.run_dir(run_id)).mark_applied(normals)
    if start:
        launch.start_worker(cfg)
    return new
