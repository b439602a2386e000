"""Per-image embeddings from a run's own model, for the similarity gallery.

Two vectors per image, both L2-normalised (cosine similarity):
- ``global``: the model's patch features averaged over the image (the registry says which: PatchCore its
  backbone's pooled multi-layer features, EfficientAD its teacher's, the other backbone models their backbone
  stages resized to the finest and concatenated) — "images that look alike";
- ``defect``: the most anomalous patches (weights from the run's anomaly map), each taken relative to the
  image's mean patch, then averaged — "defects that look alike". A query with a scratch then finds other scratches
  rather than images with the same overall texture. A training image is not scored: its defect vector weights
  its most atypical patches (``core.models.pooling.pool_unscored``).

The vectors are pooled where the features already are — each test image in the run's test pass, each training
image at PatchCore's fit (other models: one backbone-only pass) — and stored with the run (``vectors.npz``);
indexing reads them.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from core import models
from core.config import Settings
from core.config import settings as current_settings
from core.data import images
from core.data.datasets import DatasetSpec, train_images
from core.errors import VectorStoreError
from core.models.pooling import pool, pool_unscored
from core.store.artifacts import RunArtifacts
from core.store.runs import RunRegistry

log = logging.getLogger("workbench.embeddings")


def embed(loaded, rgbs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(global (B, D), defect (B, D), scores (B,), anomaly maps (B, H, W)) for decoded RGB images, from one
    scoring pass where the model allows it (``LoadedModel.forward_features``)."""
    scores, maps, feats = loaded.forward_features(loaded.preprocess(rgbs))
    g, d = pool(feats, maps)
    return g, d, scores, maps


def collection_for(loaded, dim: int) -> str:
    from core.similarity.vectorstore import collection_name  # qdrant_client: ~1.5 s, only where the index is used

    params = models.resolve_params(loaded.model_name, loaded.params)
    space = params.get("backbone") or f"efficientad_{params.get('model_size', 'small')}"
    if params.get("backbone_weights") == "random" or params.get("teacher") == "untrained":
        space += "_untrained"
    return collection_name(loaded.model_name, space, dim)


def index_run(
    run_id: str, loaded, cfg: Settings | None = None, hooks=None, batch_size: int = 8, include_train: bool = True
) -> dict:
    """Store a run's test (and train) image vectors in Qdrant, and measure retrieval precision.

    Vectors the run already pooled (``vectors.npz``: its test pass, PatchCore's fit) are read, not recomputed;
    only images without one go through the model (a run from before, or a model whose fit keeps no features)."""
    from core.similarity.vectorstore import VectorStore  # qdrant_client: ~1.5 s, only where the index is used

    cfg = cfg or current_settings()
    run = RunRegistry(cfg).get(run_id)
    art = RunArtifacts(RunRegistry(cfg).run_dir(run_id))
    records = art.records
    spec = DatasetSpec.from_dict(run.dataset)
    stored = art.vectors()
    t0 = time.perf_counter()
    test_paths = [str(p) for p in records["path"]]
    parts = [_split_vectors("test", test_paths, stored, loaded, batch_size, hooks)]
    if include_train:
        train_paths = (
            [str(p) for p in stored["train_paths"]]
            if "train_paths" in stored
            else [str(p.resolve()) for p in train_images(spec)]
        )
        if train_paths:
            parts.append(_split_vectors("train", train_paths, stored, loaded, batch_size, hooks))
    reused = sum(part["reused"] for part in parts)
    test_scores = records["score"].astype(float).to_numpy()
    payloads = []
    for part in parts:
        for i, path in enumerate(part["paths"]):
            rec = records.iloc[i] if part["split"] == "test" else None
            payloads.append(
                {
                    "dataset": spec.kind,
                    "category": spec.category,
                    "split": part["split"],
                    "label": int(rec["label"]) if rec is not None else 0,
                    "defect_type": str(rec["defect_type"]) if rec is not None else "good",
                    "image_path": path,
                    "score": float(test_scores[i]) if rec is not None else _score_or_none(part["score"][i]),
                    "index": len(payloads),
                }
            )
    vectors = {name: np.concatenate([part[name] for part in parts]) for name in ("global", "defect")}
    embed_s = time.perf_counter() - t0
    collection = collection_for(loaded, vectors["global"].shape[1])
    store = VectorStore.open(cfg)
    with store.hold(collection):  # one open of the embedded store for the upsert and both measurements
        t1 = time.perf_counter()
        n = store.index_run(run_id, collection, vectors, payloads)
        upsert_s = time.perf_counter() - t1
        result = {
            "collection": collection,
            "points": n,
            "reused_vectors": reused,
            "embed_s": embed_s,
            "upsert_s": upsert_s,
            "points_per_s": n / max(upsert_s, 1e-9),
        }
        for using in ("global", "defect"):
            try:
                result[using] = store.precision_at_k(collection, run_id, using=using)
            except VectorStoreError as exc:  # e.g. a test set of one image
                result[using] = {"error": str(exc)}
    log.info("indexed %d images of run %s into %s (%d vectors reused)", n, run_id, collection, reused)
    return result


def _score_or_none(score: float) -> float | None:
    return None if not np.isfinite(score) else float(score)


def _split_vectors(split: str, paths: list[str], stored: dict, loaded, batch_size: int, hooks) -> dict:
    """One split's vectors: the stored ones when they are for exactly these images, else embedded now."""
    if split + "_paths" in stored and [str(p) for p in stored[split + "_paths"]] == paths:
        return {
            "split": split,
            "paths": paths,
            "global": stored[split + "_global"],
            "defect": stored[split + "_defect"],
            "score": stored[split + "_score"],
            "reused": len(paths),
        }
    g_all, d_all, s_all = [], [], []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        rgbs = [images.read_image(p) for p in chunk]
        if split == "test":  # a test image's defect vector follows its anomaly map: a scoring pass
            g, d, scores, _ = embed(loaded, rgbs)
        else:  # a training image needs only its features (as PatchCore's fit pools them)
            g, d = pool_unscored(loaded.patch_features(loaded.preprocess(rgbs)))
            scores = np.full(len(chunk), np.nan)
        g_all.append(g)
        d_all.append(d)
        s_all.append(scores)
        if hooks:
            hooks.progress(f"indexing {split} images", min(start + batch_size, len(paths)), len(paths))
            hooks.check()
    dim = len(g_all[0][0]) if g_all else 0
    return {
        "split": split,
        "paths": paths,
        "global": np.concatenate(g_all) if g_all else np.zeros((0, dim), np.float32),
        "defect": np.concatenate(d_all) if d_all else np.zeros((0, dim), np.float32),
        "score": np.concatenate(s_all) if s_all else np.zeros(0),
        "reused": 0,
    }


def index_and_record(
    run_id: str, loaded, cfg: Settings | None = None, hooks=None, registry: RunRegistry | None = None
) -> dict:
    """:func:`index_run`, then store its result on the run (``run.retrieval``: what the pages and ``aw show``
    report). ``registry``: where the result goes (default: the one in ``cfg``; a Ray task passes its own)."""
    cfg = cfg or current_settings()
    result = index_run(run_id, loaded, cfg, hooks=hooks)
    (registry or RunRegistry(cfg)).update(run_id, retrieval=result)
    return result


def query_vectors(loaded, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Both embeddings of one query image (a test image or an upload), with its score and map."""
    g, d, scores, maps = embed(loaded, [rgb])
    return {"global": g[0], "defect": d[0], "score": float(scores[0]), "anomaly_map": maps[0]}


def similar(
    run_id: str,
    loaded,
    rgb: np.ndarray,
    using: str = "defect",
    k: int = 5,
    label=None,
    defect_type: str | None = None,
    split: str | None = None,
    exclude_path: str | None = None,
    cfg: Settings | None = None,
) -> tuple[dict, list]:
    """The k nearest images of the run to ``rgb`` (a test image or an upload), best first."""
    from core.similarity.vectorstore import VectorStore  # qdrant_client: ~1.5 s, only where the index is used

    query = query_vectors(loaded, rgb)
    collection = collection_for(loaded, query["global"].shape[0])
    store = VectorStore.open(cfg or current_settings())
    hits = store.search(
        collection,
        query[using],
        using=using,
        k=k + (1 if exclude_path else 0),
        run_id=run_id,
        label=label,
        defect_type=defect_type,
        split=split,
    )
    if exclude_path:
        hits = [h for h in hits if h.payload.get("image_path") != exclude_path][:k]
    return query, hits
