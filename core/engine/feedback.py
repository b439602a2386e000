"""Correct a false call without retraining: feedback makes a new version of the run, never an edit.

- **Mark as normal** (a false alarm). A memory-bank model (PatchCore) learns it at once: the image's patch features
  (computed as at fit) are subsampled with the run's coreset ratio and appended to the bank, with their provenance,
  as a new version (core.store.versions). The subsampling continues the fit's k-center greedy rule with the current
  bank as the picks so far: the patches farthest from everything normal are taken first, so the patch that raised
  the alarm is always the first one added. ``int(patches × ratio)`` (at least 1) are added, as the fit keeps that
  share of every image; a capped bank (``max_bank_size``) may grow past its cap by these few rows.
  Models without a bank keep the mark; ``core.jobs.feedback.retrain_with_feedback`` queues a run that trains on it.
- **Mark as defect** (an escape) is kept with its defect type, for the next dataset revision or retraining.
- **Honest before/after**: an image used as feedback leaves the evaluation set of the version it made (and of its
  descendants); ``compare_versions`` re-scores the remaining test images with both versions and reports the
  confusion matrix at the run's threshold, FPR at 100 % recall and image AUROC on exactly the same images.

    from core.config import settings
    from core.engine import feedback

    run_dir = settings().run_dir("RUN_ID")
    result = feedback.mark_normal(run_dir, "test/good/007.png", note="glare, not a defect")
    print(result.message)  # "v2 (from v1): +102 bank patches of 007.png (bank 20,102) in 1.1 s"
    print(feedback.compare_versions(run_dir, 1, 2)["rows"])
    feedback.undo(run_dir)                     # back to v1; v2 stays on disk
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.data import images
from core.engine import evaluation
from core.engine.explain import has_bank, patch_embedding
from core.engine.inference import LoadedModel
from core.errors import WorkbenchError
from core.models.knn import nearest_patch
from core.store import access
from core.store.artifacts import PROVENANCE_FILE, BankProvenance, RunArtifacts, write_json
from core.store.versions import Feedback, RunVersions, Version, VersionError

FEEDBACK_IMAGES = "feedback_images"  # uploads marked as feedback are kept here (a version must not lose its image)
SCORES_FILE = "scores.json"  # a version's scores of the test images, computed once by compare_versions


@dataclass
class FeedbackResult:
    kind: str  # "normal" | "defect"
    image: str
    version: Version | None  # the new version (bank models' normal marks), else None
    added: int = 0  # bank rows added
    bank_size: int | None = None
    seconds: float = 0.0
    message: str = ""
    warning: str | None = None  # e.g. the image is labelled defective in the run's test set


def labelled_defect(run_dir: Path, image) -> str | None:
    """The defect type when ``image`` is one of the run's test images labelled defective, else None: marking
    such an image normal teaches the model that this defect is fine, which the engineer should do knowingly."""
    if not isinstance(image, (str, Path)):
        return None
    try:
        records = RunArtifacts(Path(run_dir)).records
    except (OSError, ValueError, WorkbenchError):  # no test records (a run that did not finish testing)
        return None
    hit = records[(records["path"] == str(Path(image).resolve())) | (records["path"] == str(image))]
    if hit.empty or int(hit.iloc[0]["label"]) != 1:
        return None
    return str(hit.iloc[0]["defect_type"])


def defect_warning(defect_type: str) -> str:
    return (
        f"This image is labelled defective ({defect_type}) in the test set. Marking it normal teaches the model "
        "that this pattern is fine, so similar defects will pass; its label is not changed."
    )


# ---------------------------------------------------------------------------------------------- helpers


def _keep_image(run_dir: Path, image, name: str | None) -> tuple[str, np.ndarray]:
    """(a lasting path, the decoded RGB) of a feedback image: a file's own resolved path, or an upload saved into
    the run folder (a version's provenance must point at an image that stays)."""
    if isinstance(image, (str, Path)):
        path = Path(image).resolve()
        return str(path), images.read_image(path)
    rgb = image if isinstance(image, np.ndarray) else images.read_image(image, name=name)
    folder = Path(run_dir) / FEEDBACK_IMAGES
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(name or "upload").stem
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}.png"
    path.write_bytes(images.to_png_bytes(rgb))
    return str(path), rgb


def greedy_additions(rows: torch.Tensor, min_dist: torch.Tensor, k: int) -> list[int]:
    """k-center greedy over ``rows`` continued from existing centres: ``min_dist`` is each row's distance to the
    nearest centre so far (the bank); repeatedly take the farthest row and lower the others' distances."""
    md = min_dist.clone().float()
    picks: list[int] = []
    for _ in range(min(k, rows.shape[0])):
        i = int(torch.argmax(md))
        if md[i] <= 0:  # everything left is already in the bank
            break
        picks.append(i)
        md = torch.minimum(md, torch.cdist(rows, rows[i : i + 1]).squeeze(1))
    return picks


# ---------------------------------------------------------------------------------------------- marks


def mark_normal(
    run_dir: Path, image, note: str = "", who: str | None = None, name: str | None = None
) -> FeedbackResult:
    """A false alarm: ``image`` (a path, bytes or RGB array) is normal. A bank model gets a new version with the
    image's patches in its bank (the new current version); other models keep the mark for a retraining."""
    run_dir = Path(run_dir)
    versions = RunVersions(run_dir)
    access.check_write("feedback: mark normal", run=run_dir.name, image=str(name or image)[:200], note=note)
    t0 = time.perf_counter()
    parent = versions.current()
    loaded = LoadedModel(run_dir, version=parent)
    path, rgb = _keep_image(run_dir, image, name)
    who = who or access.actor()
    defect = labelled_defect(run_dir, path)
    warning = defect_warning(defect) if defect else None
    if not has_bank(loaded):
        versions.add_feedback(Feedback("normal", path, who, time.time(), note))
        return FeedbackResult(
            "normal",
            path,
            None,
            seconds=time.perf_counter() - t0,
            message=f"Kept as normal. {loaded.model_name} has no memory bank: 'Retrain with feedback' trains a new "
            "run with it.",
            warning=warning,
        )
    if path in versions.excluded(parent):
        raise VersionError(f"{Path(path).name} is already in version v{parent} as feedback.")
    rows, grid = patch_embedding(loaded, rgb)
    bank = loaded.module.model.memory_bank
    dist, _ = nearest_patch(rows, bank)
    ratio = float(loaded.params.get("coreset_sampling_ratio", 0.1))
    picks = greedy_additions(rows, dist, max(1, int(rows.shape[0] * ratio)))
    new_bank = torch.cat([bank, rows[picks]]).contiguous()
    files = _version_files(loaded, new_bank, path, picks, grid)
    name = Path(path).name
    version = versions.create(
        parent,
        f"mark normal {name}: +{len(picks)} bank patches",
        who,
        note,
        files,
        feedback_image=path,
        facts={"added": len(picks), "bank_size": int(new_bank.shape[0]), "max_distance": float(dist.max())},
    )
    seconds = time.perf_counter() - t0
    versions.add_feedback(Feedback("normal", path, who, time.time(), note, version=version.version, applied=True))
    return FeedbackResult(
        "normal",
        path,
        version,
        len(picks),
        int(new_bank.shape[0]),
        seconds,
        f"v{version.version} (from v{parent}): +{len(picks)} bank patches of {name} (bank {new_bank.shape[0]:,}) "
        f"in {seconds:.1f} s",
        warning,
    )


def _version_files(loaded: LoadedModel, bank: torch.Tensor, path: str, picks: list[int], grid) -> dict:
    """The new version's model files: the parent's tensors with the new bank, its model.json, the provenance."""
    from safetensors.torch import load_file, save_file  # safetensors: only when a version is written

    parent = RunArtifacts(loaded.model_dir)
    state = load_file(str(parent.checkpoint))
    state["model.memory_bank"] = bank.detach().cpu()
    files: dict = {
        "model.safetensors": lambda target: save_file(state, str(target)),
        "model.json": parent.model_json.read_bytes(),
    }
    provenance = BankProvenance.load(loaded.model_dir)
    if provenance is not None and len(provenance) + len(picks) == bank.shape[0]:
        idx = np.asarray(picks, dtype=np.int64)
        extended = provenance.extended(path, idx // grid[1], idx % grid[1])
        files[PROVENANCE_FILE] = lambda target: extended.save(target.parent)
    return files


def mark_defect(
    run_dir: Path, image, defect_type: str, note: str = "", who: str | None = None, name: str | None = None
) -> FeedbackResult:
    """An escape: ``image`` has a defect of ``defect_type``. Kept with the run (no model changes)."""
    if not defect_type.strip():
        raise WorkbenchError("Say which defect it is: a defect type (e.g. 'scratch').")
    run_dir = Path(run_dir)
    access.check_write("feedback: mark defect", run=run_dir.name, image=str(name or image)[:200], defect=defect_type)
    path, _ = _keep_image(run_dir, image, name)
    RunVersions(run_dir).add_feedback(
        Feedback("defect", path, who or access.actor(), time.time(), note, defect_type=defect_type.strip())
    )
    return FeedbackResult(
        "defect", path, None, message=f"Kept {Path(path).name} as a defect ({defect_type.strip()}) for this run."
    )


def undo(run_dir: Path, who: str | None = None) -> Version:
    """Back to the current version's parent (the undone version is kept and can be picked again)."""
    access.check_write("feedback: undo", run=Path(run_dir).name)
    return RunVersions(run_dir).undo(who)


def pick_version(run_dir: Path, version: int, who: str | None = None) -> Version:
    access.check_write("feedback: pick version", run=Path(run_dir).name, version=version)
    return RunVersions(run_dir).set_current(version, who)


# ---------------------------------------------------------------------------------------------- before/after


def version_scores(run_dir: Path, version: int, paths: list[str]) -> np.ndarray:
    """Raw scores of ``paths`` (test images) by ``version``: version 1's are the run's test records; a later
    version's are computed once and kept in its folder (its model never changes)."""
    run_dir = Path(run_dir)
    art = RunArtifacts(run_dir)
    records = art.records
    if version == 1:
        by_path = dict(zip(records["path"], records["score"], strict=True))
        return np.array([by_path[p] for p in paths], dtype=np.float64)
    cache_path = RunVersions(run_dir).model_dir(version) / SCORES_FILE
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    missing = [p for p in paths if p not in cache]
    if missing:
        model = LoadedModel(run_dir, version=version)
        for pred in model.predict(missing):
            if pred.error:
                raise WorkbenchError(f"Could not score {pred.name} with v{version}: {pred.error}")
            cache[pred.name] = pred.score
        write_json(cache_path, cache)
    return np.array([cache[p] for p in paths], dtype=np.float64)


def compare_versions(run_dir: Path, version_a: int, version_b: int, threshold: float | None = None) -> dict:
    """Both versions on the same remaining test images (minus every feedback image of either): per version the
    confusion matrix at ``threshold`` (default: the run's image threshold), FPR at 100 % recall, image AUROC."""
    run_dir = Path(run_dir)
    versions = RunVersions(run_dir)
    records = RunArtifacts(run_dir).records
    left_out = versions.excluded(version_a) | versions.excluded(version_b)
    keep = records[~records["path"].isin(left_out)]
    if keep.empty:
        raise WorkbenchError("No test image is left to compare on: every one was used as feedback.")
    paths, labels, types = list(keep["path"]), keep["label"].to_numpy(int), list(keep["defect_type"])
    threshold = RunArtifacts(run_dir).metrics().get("image_threshold") if threshold is None else threshold
    rows = []
    for v in (version_a, version_b):
        scores = version_scores(run_dir, v, paths)
        metrics = evaluation.image_metrics(scores, labels, types)
        row = {
            "version": v,
            "image_auroc": metrics["image_auroc"],
            "fpr_at_full_recall": metrics["fpr_at_full_recall"],
            "zero_escape_threshold": metrics["zero_escape_threshold"],
        }
        if threshold is not None:
            view = evaluation.threshold_view(scores, labels, types, threshold)
            row.update({k: view[k] for k in ("tp", "fp", "tn", "fn", "fpr", "recall")})
        rows.append(row)
    return {
        "threshold": threshold,
        "n_images": len(paths),
        "left_out": sorted(left_out),
        "rows": rows,
    }
