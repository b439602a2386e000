"""Training-set audit: score every 'good' training image with a model that never saw it, and rank them.

A defective image in the 'good' folder teaches a model that the defect is normal. To find such images, the training
set is split into ``k`` folds; for each fold a PatchCore with a small memory bank is fitted on the other folds and
scores the held-out fold. Every image gets one score and one anomaly map from a model it was not part of, so a
defective image stands out instead of matching itself. The ranked list is the gallery of the Training page and
``aw audit``.

Cost: the backbone sees every image once. The k fits reuse those patch features (the product's PatchCore module:
its training forward collects the embeddings, its ``fit`` runs the product's coreset selection), and scoring a
held-out fold reuses them too (nearest-neighbour search, anomalib's anomaly score and map). So an audit costs one
feature pass plus k small coreset selections: about one fit (``benchmarks/audit.py`` measures it).

Images already excluded (``core.data.exclusions``) are scored too but never fitted on, so they stay visible (and can
be included again). The result is stored beside the dataset's exclusions: ``artifacts/audits/<dataset key>/
audit.json`` (ranked scores) and ``audit_maps.npz`` (anomaly maps, float16, in the same order).

    from core.data import datasets
    from core.engine.audit import audit_dataset
    result = audit_dataset(datasets.demo(), k=4)
    for entry in result.top(5):
        print(entry.rank, entry.name, round(entry.score, 2))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.config import Settings
from core.config import settings as current_settings
from core.data import images
from core.data.datasets import DatasetSpec, train_images
from core.data.exclusions import dataset_key, excluded_names, trust_dir
from core.engine.inference import SeparableBlur, preprocess_images
from core.errors import DatasetError
from core.models import Hooks, create_model, resolve_params
from core.models.knn import nearest_patch
from core.store.artifacts import read_json, write_json

# A small bank is enough to tell a defect from the normal texture; Lite0 ships in a pinned package (works offline).
AUDIT_PARAMS = {"backbone": "tf_efficientnet_lite0", "coreset_sampling_ratio": 0.02, "image_size": 256}
MAP_SIDE = 128  # stored maps are at most this wide: enough for a gallery thumbnail, 8 MB for 264 images
SUSPICIOUS_MADS = 6.0  # a score this many robust deviations above the median is called suspicious


@dataclass
class AuditEntry:
    path: str
    name: str  # file name in train/good (what exclusions record)
    fold: int
    score: float
    rank: int  # 1 = most anomalous
    robust_z: float  # (score - median) / (1.4826 * MAD): how unusual, comparable across datasets
    suspicious: bool
    excluded: bool


@dataclass
class AuditResult:
    dataset: dict  # the DatasetSpec (as a dict) that was audited
    dataset_key: str
    k: int
    seed: int
    params: dict  # the PatchCore parameters of the fold models
    entries: list[AuditEntry] = field(default_factory=list)  # ranked, most anomalous first
    seconds: float = 0.0
    parts: dict = field(default_factory=dict)  # seconds per phase: setup (weights), features, coreset, scoring
    created_at: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AuditResult:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["entries"] = [AuditEntry(**e) for e in data.get("entries", [])]
        return cls(**fields)

    def top(self, n: int = 20, include_excluded: bool = True) -> list[AuditEntry]:
        rows = self.entries if include_excluded else [e for e in self.entries if not e.excluded]
        return rows[:n]

    @property
    def n_suspicious(self) -> int:
        return sum(e.suspicious for e in self.entries)

    def statement(self) -> str:
        spec = DatasetSpec.from_dict(self.dataset)
        excluded = [e.name for e in self.entries if e.excluded]
        line = (
            f"Training set {spec.kind}:{spec.category} audited ({len(self.entries)} images, {self.k}-fold PatchCore, "
            f"{self.seconds:.0f} s): {self.n_suspicious} image(s) score as suspicious"
        )
        line += f"; excluded: {', '.join(excluded)}." if excluded else "; none excluded."
        return line


def _embed(module, paths: list[Path], batch_size: int, hooks: Hooks) -> list[torch.Tensor]:
    """Patch embeddings (h*w, D) per image, from the PatchCore model's own training forward (one backbone pass)."""
    model = module.model
    model.train()  # the training forward returns (and stores) the embedding; the backbone stays in eval mode
    transform = module.pre_processor.transform
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            batch = preprocess_images([images.read_image_fast(p) for p in chunk], transform)
            embedding = model(batch)
            model.embedding_store.clear()  # kept per image below instead
            out += list(embedding.reshape(len(chunk), -1, embedding.shape[-1]))
            hooks.progress("feature extraction", min(start + batch_size, len(paths)), len(paths))
    return out


def _score(model, embeddings: list[torch.Tensor], grid: tuple[int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and anomaly maps of held-out images from their embeddings: the nearest-neighbour search, anomalib's
    image score and map (the steps of ``inference.FastPatchcore`` after the backbone)."""
    model.eval()
    bank = model.memory_bank
    blur = SeparableBlur(model.anomaly_map_generator.blur)
    scores, maps = [], []
    with torch.inference_mode():
        for start in range(0, len(embeddings), 8):
            chunk = embeddings[start : start + 8]
            embedding = torch.cat(chunk)
            patch_scores, locations = nearest_patch(embedding, bank)
            b = len(chunk)
            patch_scores = patch_scores.reshape((b, -1))
            pred = model.compute_anomaly_score(patch_scores, locations.reshape((b, -1)), embedding)
            anomaly = blur(F.interpolate(patch_scores.reshape((b, 1, *grid)), size=(size, size)))
            side = min(size, MAP_SIDE)
            if side != size:
                anomaly = F.interpolate(anomaly, size=(side, side), mode="bilinear", align_corners=False)
            scores.append(pred.reshape(-1).float().numpy())
            maps.append(anomaly[:, 0].float().numpy())
    return np.concatenate(scores), np.concatenate(maps)


def audit_dataset(
    spec: DatasetSpec,
    k: int = 4,
    params: dict | None = None,
    seed: int = 0,
    *,
    cfg: Settings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    save: bool = True,
    batch_size: int = 16,
) -> AuditResult:
    """Audit ``spec``'s training images with ``k``-fold PatchCore (see the module docstring); stores the result."""
    cfg = cfg or current_settings()
    excluded = set(excluded_names(spec, cfg))  # now, not when the spec was made
    paths = train_images(replace(spec, excluded=()))
    if len(paths) < 3:
        raise DatasetError(f"An audit needs at least 3 training images; {spec.label} has {len(paths)}.")
    is_excluded = np.array([p.name in excluded for p in paths])
    usable = int((~is_excluded).sum())
    if not 2 <= k <= usable:
        raise DatasetError(f"The audit's folds must be between 2 and {usable} (the images not excluded), got {k}.")
    params = resolve_params("patchcore", {**AUDIT_PARAMS, **(params or {})})
    hooks = Hooks(progress=progress or (lambda phase, done, total: None))
    torch.manual_seed(seed)  # the coreset's random start, as in a run
    start = time.perf_counter()
    parts = {"setup": 0.0, "features": 0.0, "coreset": 0.0, "scoring": 0.0}

    module = create_model("patchcore", params, cfg, hooks)  # loads the backbone weights
    parts["setup"] = time.perf_counter() - start
    embeddings = _embed(module, paths, batch_size, hooks)
    size = int(params["image_size"])
    n_patches = embeddings[0].shape[0]
    side = int(round(np.sqrt(n_patches)))  # square inputs (the pre-processor resizes to size x size)
    grid = (side, n_patches // side)
    parts["features"] = time.perf_counter() - start - parts["setup"]

    # Folds: a seeded shuffle, then round-robin, so folds differ in size by at most one; excluded images are spread
    # over the folds like the others (they are scored, never fitted on).
    order = np.random.default_rng(seed).permutation(len(paths))
    fold = np.empty(len(paths), dtype=int)
    fold[order] = np.arange(len(paths)) % k
    scores = np.zeros(len(paths))
    maps = np.zeros((len(paths), min(size, MAP_SIDE), min(size, MAP_SIDE)), np.float32)
    for f in range(k):
        t0 = time.perf_counter()
        fit_idx = np.flatnonzero((fold != f) & ~is_excluded)
        module.model.embedding_store = [embeddings[i] for i in fit_idx]
        module.fit()  # the product's PatchCore fit: coreset selection into the memory bank
        t1 = time.perf_counter()
        held = np.flatnonzero(fold == f)
        s, m = _score(module.model, [embeddings[i] for i in held], grid, size)
        scores[held], maps[held] = s, m
        parts["coreset"] += t1 - t0
        parts["scoring"] += time.perf_counter() - t1
        hooks.progress("audit folds", f + 1, k)

    median = float(np.median(scores))
    mad = float(np.median(np.abs(scores - median))) * 1.4826 or float(np.std(scores)) or 1.0
    ranking = np.argsort(-scores, kind="stable")
    entries = [
        AuditEntry(
            path=str(paths[i]),
            name=paths[i].name,
            fold=int(fold[i]),
            score=float(scores[i]),
            rank=r + 1,
            robust_z=(float(scores[i]) - median) / mad,
            suspicious=bool((scores[i] - median) / mad >= SUSPICIOUS_MADS),
            excluded=bool(is_excluded[i]),
        )
        for r, i in enumerate(ranking)
    ]
    result = AuditResult(
        dataset=replace(spec, excluded=tuple(sorted(excluded))).to_dict(),
        dataset_key=dataset_key(spec),
        k=k,
        seed=int(seed),
        params=params,
        entries=entries,
        seconds=round(time.perf_counter() - start, 2),
        parts={key: round(v, 2) for key, v in parts.items()},
        created_at=time.time(),
    )
    if save:
        folder = trust_dir(spec, cfg)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "audit_maps.tmp.npz"
        np.savez_compressed(tmp, maps=maps[ranking].astype(np.float16))
        tmp.replace(folder / "audit_maps.npz")
        write_json(folder / "audit.json", result.to_dict())  # last: a reader finds maps for every entry
    return result


def load_audit(spec: DatasetSpec, cfg: Settings | None = None) -> AuditResult | None:
    """The stored audit of ``spec``'s dataset, with exclusions as recorded now; None if it was never audited."""
    data = read_json(trust_dir(spec, cfg) / "audit.json")
    if not data:
        return None
    result = AuditResult.from_dict(data)
    excluded = set(excluded_names(spec, cfg))
    for entry in result.entries:
        entry.excluded = entry.name in excluded
    return result


def audit_maps(spec: DatasetSpec, cfg: Settings | None = None) -> np.ndarray | None:
    """The stored anomaly maps (n, h, w) float16, in the audit's ranked order; None if absent."""
    path = trust_dir(spec, cfg) / "audit_maps.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["maps"]
