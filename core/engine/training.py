"""One run, start to finish: fit → save → test → evaluate → time → index.

``execute(run_id)`` is what a worker process runs. Fitting goes through anomalib's ``Engine`` (the field's
training loop); testing, timing and indexing go through ``core.engine.inference`` so the stored per-image records
are exactly what the viewer and the upload flow will reproduce. Progress, phase and cancellation travel
through the run registry.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from pathlib import Path

import numpy as np
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import Callback

from core import models
from core.config import Settings
from core.config import settings as current_settings
from core.data import images
from core.data.datasets import DatasetSpec, build_datamodule, check_available, test_samples
from core.engine import evaluation, latency
from core.engine.inference import LoadedModel, calibrate_post_processor, save_checkpoint, save_weights
from core.errors import RunCancelled, WorkbenchError, explain
from core.runtime import limit_heap_growth, set_threads, tune_malloc_for_inference
from core.similarity.embeddings import embed, index_and_record
from core.store.artifacts import RunArtifacts, write_json
from core.store.runs import CANCELLED, DONE, FAILED, RunRegistry

log = logging.getLogger("workbench.run")


class RunHooks(models.Hooks):
    """Throttled progress reports to the registry, a log line every 10 %, cancellation checks."""

    def __init__(self, registry: RunRegistry, run_id: str, echo=None) -> None:
        self.registry, self.run_id, self.echo = registry, run_id, echo
        self._last_write = 0.0
        self._last_check = 0.0
        self._last_logged: tuple[str, int] = ("", -1)
        self._cancel = False
        self.current_phase = ""

    def progress(self, phase: str, done: int, total: int) -> None:
        self.current_phase = phase
        fraction = min(1.0, done / total) if total else 0.0
        now = time.monotonic()
        decile = int(fraction * 10)
        if (phase, decile) != self._last_logged:
            self._last_logged = (phase, decile)
            log.info("%s: %d/%d (%d%%)", phase, done, total, fraction * 100)
        if now - self._last_write > 0.5 or done >= total:
            self._last_write = now
            self.registry.set_progress(self.run_id, phase, fraction, f"{phase}: {done}/{total}")
        if self.echo:
            self.echo(phase, done, total)

    def phase(self, name: str) -> None:
        self.current_phase = name
        log.info("phase: %s", name)
        self.registry.set_progress(self.run_id, name, 0.0, name)
        if self.echo:
            self.echo(name, 0, 0)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancel and now - self._last_check > 1.0:
            self._last_check = now
            self._cancel = self.registry.cancel_requested(self.run_id)
        return self._cancel

    def check(self) -> None:
        if self.should_stop():
            raise RunCancelled("cancelled by the user")


def _progress_callback(hooks: RunHooks, loss_path: Path, phase: str):
    """A Lightning callback: fit progress (steps, or batches over all epochs), the training-loss curve, and
    cancellation at every batch."""

    class Progress(Callback):
        def __init__(self) -> None:
            self.batches = 0  # counted here: models with manual optimisation leave global_step at 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batches += 1
            if trainer.max_steps and trainer.max_steps > 0:  # step-based training (EfficientAD)
                done, total = trainer.global_step, trainer.max_steps
            else:
                per_epoch = max(1, int(trainer.num_training_batches))
                done, total = self.batches, per_epoch * max(1, int(trainer.max_epochs or 1))
            hooks.progress(phase, done, total)
            # One-pass models return a dummy loss: only models that train with gradients have a curve.
            loss = outputs.get("loss") if isinstance(outputs, dict) and phase == "training" else None
            if loss is not None and (self.batches % 5 == 0 or self.batches == 1):
                with open(loss_path, "a") as fh:
                    fh.write(
                        json.dumps({"step": self.batches, "epoch": trainer.current_epoch, "loss": float(loss)}) + "\n"
                    )
            hooks.check()

        def on_validation_epoch_start(self, trainer, pl_module):
            hooks.phase("validation")

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            total = trainer.num_val_batches[0] if trainer.num_val_batches else batch_idx + 1
            hooks.progress("validation", batch_idx + 1, total)
            hooks.check()

    return Progress()


def fit(run, spec: DatasetSpec, hooks: RunHooks, run_dir: Path, cfg: Settings):
    """Train with anomalib's Engine. Returns the trained Lightning module and the fit time in seconds."""
    from anomalib.engine import Engine  # anomalib.engine: another second (timm), only when a model is fitted

    seed_everything(run.seed, workers=True, verbose=False)
    entry = models.get_entry(run.model)
    params = models.resolve_params(run.model, run.params)
    module = models.create_model(run.model, params, cfg, hooks)
    datamodule = build_datamodule(
        spec, train_batch_size=int(params.get("batch_size", entry.train_batch_size)), seed=run.seed
    )
    engine = Engine(
        accelerator="auto",
        devices=1,
        logger=False,
        default_root_dir=run_dir / "lightning",
        callbacks=[_progress_callback(hooks, RunArtifacts(run_dir).loss_path, entry.fit_phase)],
        enable_progress_bar=False,
        enable_model_summary=False,
        **entry.trainer_kwargs(params),
    )
    hooks.phase(entry.fit_phase)
    t0 = time.perf_counter()
    engine.fit(model=module, datamodule=datamodule)
    elapsed = time.perf_counter() - t0
    # Engine always writes a pickled Lightning checkpoint; the run keeps its own safetensors one instead.
    shutil.rmtree(run_dir / "lightning", ignore_errors=True)
    return module, elapsed


def test(
    loaded, spec: DatasetSpec, hooks: RunHooks, art: RunArtifacts, batch_size: int = 8, vectors: bool = True
) -> dict:
    """Score every test image with the fast path; store records and maps; compute metrics and curves.
    ``vectors``: also pool each image's similarity vectors from the features this pass scored (``vectors.npz``),
    so that indexing the run needs no second pass over the test set."""
    samples = test_samples(spec)
    t0 = time.perf_counter()
    scores, maps, masks = _score_test_set(loaded, samples, hooks, art, batch_size, vectors)
    test_s = time.perf_counter() - t0
    labels = np.array([s.label for s in samples])
    metrics = _test_metrics(samples, labels, scores, maps, masks)
    threshold = metrics.get("image_threshold")
    records = [
        {
            "index": i,
            "path": s.path,
            "label": s.label,
            "defect_type": s.defect_type,
            "mask_path": s.mask_path,
            "source": s.source,
            "score": float(scores[i]),
            "pred_label": int(threshold is not None and scores[i] >= threshold),
        }
        for i, s in enumerate(samples)
    ]
    art.save_records(records, maps, masks)
    if calibrate_post_processor(loaded.module, scores, maps, threshold, metrics.get("pixel_threshold")):
        save_weights(loaded.module, art.run_dir)
    write_json(art.curves_path, evaluation.curves(scores, labels))
    write_json(art.metrics_path, metrics)
    # The range of anomaly values on the test set fixes the heatmap colour scale for every image of the run.
    model_json = json.loads(art.model_json.read_text())
    model_json["map_range"] = [float(np.percentile(maps, 1)), float(np.percentile(maps, 99.9))]
    write_json(art.model_json, model_json)
    metrics["test_s"] = test_s
    return metrics


def _score_test_set(
    loaded, samples: list, hooks: RunHooks, art: RunArtifacts, batch_size: int, vectors: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, maps, masks) of every test sample, in batches; with ``vectors``, each image's similarity vectors
    pooled from the same pass are stored with the run."""
    scores = np.zeros(len(samples), dtype=np.float64)
    maps = None
    masks = None
    pooled: dict[str, list] = {"global": [], "defect": []}
    vectors = vectors and models.get_entry(loaded.model_name).has_patch_features
    for start in range(0, len(samples), batch_size):
        hooks.check()
        chunk = samples[start : start + batch_size]
        rgbs = [images.read_image(s.path) for s in chunk]
        if vectors:  # one scoring pass gives the scores, the maps and both similarity vectors
            g, d, s, m = embed(loaded, rgbs)
            pooled["global"].append(g)
            pooled["defect"].append(d)
        else:
            s, m = loaded.forward(loaded.preprocess(rgbs))
        if maps is None:
            maps = np.zeros((len(samples), *m.shape[1:]), dtype=np.float32)
            masks = np.zeros((len(samples), *m.shape[1:]), dtype=bool)
        scores[start : start + len(chunk)] = s
        maps[start : start + len(chunk)] = m
        for i, sample in enumerate(chunk):
            if sample.mask_path:
                masks[start + i] = images.read_mask(sample.mask_path, shape=m.shape[1:])
        hooks.progress("testing", min(start + batch_size, len(samples)), len(samples))
    if vectors and samples:
        art.save_vectors("test", [s.path for s in samples], {k: np.concatenate(v) for k, v in pooled.items()}, scores)
    return scores, maps, masks


def _test_metrics(samples: list, labels: np.ndarray, scores, maps, masks) -> dict:
    """anomalib's metrics on the scored test set, with notes on what was not measurable and the threshold's source."""
    defect_types = [s.defect_type for s in samples]
    has_mask = np.array([s.mask_path is not None for s in samples])
    # Pixel metrics over the normal images and the abnormal ones that have a mask (an abnormal image without
    # one would count its defect as defect-free pixels).
    pixel_index = np.flatnonzero((labels == 0) | has_mask) if has_mask.any() else None
    metrics = evaluation.evaluate(
        scores,
        labels,
        defect_types,
        maps if pixel_index is not None else None,
        masks if pixel_index is not None else None,
        pixel_index=pixel_index,
    )
    n_unmasked = int(((labels == 1) & ~has_mask).sum())
    if pixel_index is None:
        metrics["notes"].append("No ground-truth masks: pixel AUROC, pixel F1 and AUPRO are not available.")
    elif n_unmasked:
        metrics["notes"].append(
            f"Pixel metrics use the {int(has_mask.sum())} abnormal images that have a mask; {n_unmasked} have none."
        )
    metrics["threshold_source"] = "F1-optimal on the test set (anomalib's adaptive threshold)"
    if not labels.any():
        # Nothing abnormal to choose a threshold with: flag what scores above every held-out normal image,
        # so uploads still get a verdict (zero false alarms on the normals seen).
        metrics["image_threshold"] = float(np.nextafter(scores.max(), np.inf))
        metrics["threshold_source"] = "just above the highest held-out normal score (no abnormal test images)"
    return metrics


def _file_logging(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    # Lightning advertises its cloud logger at every fit: noise in a user's run log.
    handler.addFilter(lambda record: "Tip: For seamless cloud logging" not in record.getMessage())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def execute(
    run_id: str, cfg: Settings | None = None, echo=None, index: bool = True, registry: RunRegistry | None = None
) -> str:
    """Run ``run_id`` (already claimed as 'running'). Returns its final status; never raises for run errors.
    ``registry``: where progress and results go (default: the one in ``cfg``; a Ray task passes one that also
    reports to the worker, see core.jobs.cluster)."""
    cfg = cfg or current_settings()
    registry = registry or RunRegistry(cfg)
    run = registry.get(run_id)
    run_dir = registry.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    art = RunArtifacts(run_dir)
    handler = _file_logging(art.log_path)
    hooks = RunHooks(registry, run_id, echo)
    timings: dict = {}
    try:
        threads = set_threads()
        registry.update(run_id, environment=latency.environment())
        log.info(
            "run %s: %s on %s, params %s, seed %s, %d threads",
            run_id,
            run.model,
            run.dataset.get("category"),
            run.params,
            run.seed,
            threads,
        )
        spec = DatasetSpec.from_dict(run.dataset)
        check_available(spec, cfg)
        params = models.resolve_params(run.model, run.params)
        # glibc's training setting (core/memory.py) turns every large tensor into fresh page faults: feature
        # extraction ran at half speed under it and an EfficientAD-S step took 1.78 s instead of 1.22 s. Only
        # PatchCore's coreset step needs it, and sets it around itself.
        tune_malloc_for_inference()

        module, timings["fit_s"] = fit(run, spec, hooks, run_dir, cfg)
        timings["peak_rss_fit_mb"] = latency.peak_rss_mb()
        coreset = getattr(module, "coreset_info", None)
        if coreset:
            timings["coreset_s"] = coreset["seconds"]
            registry.merge_extra(run_id, coreset=coreset)
            log.info("memory bank: %(bank_size)d of %(patches)d patches (%(method)s, %(seconds).1f s)", coreset)
        save_checkpoint(module, run_dir, run.model, params)
        provenance = getattr(module, "bank_provenance", None)
        if provenance is not None:  # where each bank entry came from: for explanations and feedback versions
            provenance.save(run_dir)
        pooled = getattr(module, "train_vectors", None)
        if pooled is not None:  # the training images' similarity vectors, pooled at fit (indexing reuses them)
            art.save_vectors("train", list(module.train_paths), pooled, pooled.pop("score"))
        del module

        hooks.phase("testing")
        # Training is over: let glibc reuse large blocks again (the training threshold doubles inference time).
        tune_malloc_for_inference()
        loaded = LoadedModel(run_dir)
        metrics = test(loaded, spec, hooks, art, vectors=index)
        timings["test_s"] = metrics.pop("test_s")
        registry.update(run_id, metrics=metrics, timings=timings)

        hooks.phase("timing")
        t0 = time.perf_counter()
        lat = latency.measure(loaded, [r["path"] for r in json.loads(art.records_path.read_text())])
        timings["timing_s"] = time.perf_counter() - t0  # a fixed sample (latency.measure): seconds at any data size
        write_json(art.latency_path, lat)
        timings["checkpoint_mb"] = art.checkpoint.stat().st_size / 2**20
        registry.update(run_id, latency=lat, timings=timings)

        if index:
            hooks.phase("indexing")
            t0 = time.perf_counter()
            try:
                index_and_record(run_id, loaded, cfg, hooks=hooks, registry=registry)
                timings["index_s"] = time.perf_counter() - t0
                registry.update(run_id, timings=timings)
            except WorkbenchError as exc:
                log.warning("similarity indexing failed (the run's results are kept): %s", exc)
                registry.merge_extra(run_id, index_error=str(exc))
        registry.finish(run_id, DONE, phase="done", message="finished")
        log.info("run %s done: %s", run_id, {k: metrics.get(k) for k in ("image_auroc", "pixel_auroc")})
        return DONE
    except RunCancelled:
        log.info("run %s cancelled", run_id)
        registry.finish(run_id, CANCELLED, message="cancelled by the user", timings=timings)
        return CANCELLED
    except WorkbenchError as exc:
        log.error("run %s failed: %s", run_id, exc)
        registry.finish(run_id, FAILED, error=str(exc), timings=timings)
        return FAILED
    except Exception as exc:  # a library failure or a bug: a short message on the run, the traceback in its log
        log.error("run %s failed during %s:\n%s", run_id, hooks.current_phase or "start-up", traceback.format_exc())
        registry.finish(
            run_id,
            FAILED,
            timings=timings,
            error=f"{explain(exc, hooks.current_phase)} (traceback in the run log: {art.log_path})",
        )
        return FAILED
    finally:
        limit_heap_growth()  # back to the training setting, for a process that runs several runs in turn
        logging.getLogger().removeHandler(handler)
        handler.close()
