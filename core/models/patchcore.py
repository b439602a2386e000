"""PatchCore (Roth et al., CVPR 2022): a memory bank of pretrained patch features; no gradient training.

anomalib's ``Patchcore`` with the product's coreset step (``core.models.coreset``: the same k-center greedy picks,
minutes instead of hours at a user's scale, progress and cancellation) and a bank-size cap.
"""

from __future__ import annotations

import math
import time

import numpy as np

from core.config import Settings
from core.errors import WeightsError
from core.models import sizing, weights
from core.models.cost import (
    DECODE_S_PER_MEGAPIXEL,
    FIT_OVERHEAD_S,
    INDEX_S_PER_IMAGE,
    REFERENCE_GFLOPS,
    RUN_OVERHEAD_S,
    TIMING_IMAGES,
    TORCH_BASE_MB,
    Estimate,
)
from core.models.folding import fold_batchnorm
from core.models.padding import static_same_padding
from core.models.registry import (
    Hooks,
    ModelEntry,
    Param,
    backbone_argument,
    backbone_param,
    image_size_param,
    register,
    resize_normalize,
)
from core.runtime import heap_limited

# A time/quality trade-off, measured (README "Own images at scale"): on 1,000 real 256² tiles (1 M patches) pixel
# AUROC is flat from 10k entries on (0.981 -> 0.983 at 80k) while image AUROC still rises ~0.007 per doubling; fit and
# scoring time grow linearly with the bank (1,000 images at 10 %: 109 s capped here, 337 s uncapped).
MAX_BANK_SIZE = 20_000
STAGES = (2, 3)  # stride 8 and 16: the paper's WRN-50 layer2 + layer3

# Reference-machine constants of the PatchCore estimate, from benchmarks/scaling.py (README "Own images at scale").
# The blocked coreset runs its N x k x d distance products at half the probe's speed (least squares over the 100-1,000
# image rows: the pool's matrix-vector picks and the bound updates are memory-bound), plus a small cost per pick.
BLOCKED_GREEDY_EFFICIENCY = 0.5
BLOCKED_GREEDY_S_PER_PICK = 5e-5
FEATURE_PEAK_FACTOR = 1.6
ANOMALIB_GREEDY_S_PER_PICK_PATCH = 6e-8  # anomalib-exact sampler at ~1 M patches (pruning helps less there)
TRAIN_VECTOR_S_PER_VALUE = 2e-9  # pooling a training image's vectors at fit, per feature value (run log)


def patchcore_layers(p: dict) -> list[str]:
    layers = [s.strip() for s in str(p["layers"]).split(",") if s.strip()]
    return layers or list(weights.get_backbone(p["backbone"]).stage_layers(STAGES))


def _grid_shape(rows_per_image: int, image_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) feature grid of ``rows_per_image`` patches on an input of ``image_hw`` (same aspect ratio)."""
    h = max(1, round(math.sqrt(rows_per_image * image_hw[0] / image_hw[1])))
    w = rows_per_image // h
    if h * w != rows_per_image:
        raise ValueError(f"{rows_per_image} patches per image do not form a grid for an input of {image_hw}")
    return h, w


def train_vectors(embedding, grid: tuple[int, int], hooks: Hooks | None = None, chunk: int = 64) -> dict:
    """Each training image's similarity vectors (``core.models.pooling.pool_unscored``) from the fit's own patch
    embeddings (rows in fit order, ``grid`` (h, w) per image): indexing then neither decodes the image nor runs
    the backbone again. Milliseconds per image: no scoring (see ``pool_unscored``)."""
    from core.models.pooling import pool_unscored  # torch: not when the registry loads (page start-up)

    h, w = grid
    per_image = h * w
    n = embedding.shape[0] // per_image
    g_all, d_all = [], []
    for start in range(0, n, chunk):
        rows = embedding[start * per_image : min(n, start + chunk) * per_image]
        g, d = pool_unscored(rows.reshape(-1, h, w, rows.shape[1]).permute(0, 3, 1, 2))
        g_all.append(g)
        d_all.append(d)
        if hooks is not None:
            hooks.progress("training-image vectors", min(n, start + chunk), n)
            hooks.check()
    return {"global": np.concatenate(g_all), "defect": np.concatenate(d_all), "score": np.full(n, np.nan)}


def _build(p: dict, cfg: Settings, hooks: Hooks, pre_trained: bool):
    from anomalib.models import Patchcore  # anomalib: not when the registry loads (page start-up)

    backbone = weights.get_backbone(p["backbone"])
    # With pre_trained=False the architecture is all that's needed: a run's checkpoint supplies the weights.
    backbone_arg = backbone_argument(p, cfg, pre_trained)

    class WorkbenchPatchcore(Patchcore):
        """anomalib's PatchCore with a fast, exact coreset step that reports progress and can be cancelled, and
        that keeps where each memory-bank entry came from (``bank_provenance``: training image, patch row, col)."""

        train_paths: list[str]
        patch_grid: tuple[int, int] | None = None
        train_vectors: dict | None = None  # each training image's similarity vectors (``train_vectors``)
        bank_provenance = None  # core.store.artifacts.BankProvenance after fit (pandas: not at registry load)

        def training_step(self, batch, *args, **kwargs):
            # The fit order of the training images (the datamodule may shuffle): the k-th patch row of the
            # embedding store belongs to image k // (h*w) of this list.
            if not hasattr(self, "train_paths"):
                self.train_paths = []
                # The frozen backbone runs in eval mode anyway (anomalib's extractor sets it on every call): fold its
                # BatchNorms once, as the test pass does, so the bank holds the features the test pass computes.
                self.model.feature_extractor.eval()
                fold_batchnorm(self.model.feature_extractor)
                static_same_padding(self.model.feature_extractor)
            self.train_paths.extend(str(path) for path in batch.image_path)
            out = super().training_step(batch, *args, **kwargs)
            rows = self.model.embedding_store[-1].shape[0] // len(batch.image_path)
            self.patch_grid = _grid_shape(rows, tuple(batch.image.shape[-2:]))
            return out

        def fit(self) -> None:
            from core.models.coreset import concat_and_clear, select_coreset_indices  # torch: not at registry load
            from core.models.provenance import provenance_of  # pandas (run files): not when the registry loads

            embedding = concat_and_clear(self.model.embedding_store)
            with heap_limited():  # see core/runtime.py
                picks, self.coreset_info = select_coreset_indices(
                    embedding,
                    self.coreset_sampling_ratio,
                    max_size=p["max_bank_size"] or None,
                    method=p["coreset_method"],
                    progress=lambda done, total: hooks.progress("coreset selection", done, total),
                    should_stop=hooks.should_stop,
                )
            self.model.memory_bank = embedding[picks]
            if self.patch_grid is not None and getattr(self, "train_paths", None):
                t0 = time.perf_counter()
                self.bank_provenance = provenance_of(np.asarray(picks), self.patch_grid, self.train_paths)
                self.coreset_info["provenance_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()  # while the features are in memory: indexing then skips these images
                self.train_vectors = train_vectors(embedding, self.patch_grid, hooks)
                self.coreset_info["train_vectors_s"] = time.perf_counter() - t0

    try:
        return WorkbenchPatchcore(
            backbone=backbone_arg,
            layers=patchcore_layers(p),
            pre_trained=pre_trained,
            coreset_sampling_ratio=p["coreset_sampling_ratio"],
            num_neighbors=p["num_neighbors"],
            pre_processor=resize_normalize(p["image_size"], backbone.mean, backbone.std),
            evaluator=False,
            visualizer=False,
        )
    except (RuntimeError, OSError) as exc:  # timm raises these for missing/unreachable weights
        raise WeightsError(f"Could not load backbone '{backbone.name}': {exc}") from exc


def _estimate(p: dict, prof, slow: float):

    backbone = weights.get_backbone(p["backbone"])
    dims, stride = backbone.feature_dims(patchcore_layers(p))
    dims = dims or 512
    side = p["image_size"] // stride
    per_image = side * side
    patches = prof.n_train * per_image
    bank = int(patches * p["coreset_sampling_ratio"])
    if p["max_bank_size"]:
        bank = min(bank, p["max_bank_size"])
    flops = REFERENCE_GFLOPS * 1e9 / slow
    extract = (backbone.extract_s_256 * (p["image_size"] / 256) ** 2 + DECODE_S_PER_MEGAPIXEL * prof.megapixels) * slow
    jl = int(4 * np.log(max(patches, 2)) / (0.9**2 / 2 - 0.9**3 / 3))
    if p["coreset_method"] == "anomalib":
        coreset = ANOMALIB_GREEDY_S_PER_PICK_PATCH * patches * bank * slow
        extra_mb = patches * jl * 4 * 2 / 2**20  # projected features and a pass buffer
    else:
        coreset = (
            patches * bank * dims * 2 / (flops * BLOCKED_GREEDY_EFFICIENCY) + BLOCKED_GREEDY_S_PER_PICK * bank * slow
        )
        extra_mb = patches * 12 / 2**20 + 160  # bounds and norms per patch; the pool and two chunk buffers
    score = extract + per_image * bank * dims * 2 / flops  # one test image: features + nearest-neighbour search
    parts = {
        "feature extraction": prof.n_train * extract,
        "coreset selection": coreset,
        "testing": prof.n_test * score,
        # training images' vectors are pooled from the fit's features (ms each), test images' in the test pass
        "training-image vectors": prof.n_train * per_image * dims * TRAIN_VECTOR_S_PER_VALUE * slow,
        "timing": TIMING_IMAGES * score,
        "indexing": prof.n_images * INDEX_S_PER_IMAGE * slow,
    }
    fit = FIT_OVERHEAD_S * slow + parts["feature extraction"] + coreset + parts["training-image vectors"]
    # The features' share of the peak: up to 1.6x their size (2,000 images, the same run twice: 2.6 and 3.5 GB; the
    # allocator's timing decides how much of the extraction's freed buffers are still resident when the bank forms).
    peak = TORCH_BASE_MB + FEATURE_PEAK_FACTOR * patches * dims * 4 / 2**20 + extra_mb
    return Estimate(
        seconds=RUN_OVERHEAD_S * slow + fit + parts["testing"] + parts["timing"] + parts["indexing"],
        fit_seconds=fit,
        peak_mb=peak,
        parts=parts,
        facts={
            "train images": prof.n_train,
            "test images": prof.n_test,
            "patches": patches,
            "bank size": bank,
            "feature dims": dims,
        },
    )


def _follow_data(p: dict, prof) -> sizing.SizeChoice:
    """image_size 0: the size for this data (core.models.sizing), never one whose fit would not fit in memory."""
    return sizing.patchcore_choice(
        prof,
        None if p["max_bank_size"] == MAX_BANK_SIZE else p["max_bank_size"],
        peak_mb=lambda chosen: _estimate({**p, **chosen}, prof, 1.0).peak_mb,
    )


def _patch_features(model, batch):
    feats = model.feature_extractor(batch)
    feats = {layer: model.feature_pooler(f) for layer, f in feats.items()}
    return model.generate_embedding(feats)


register(
    ModelEntry(
        name="patchcore",
        label="PatchCore",
        anomalib_class="Patchcore",
        description="Memory bank of pretrained patch features; no training, one pass over normal images.",
        backbone_stages=STAGES,
        anomalib_backbone="wide_resnet50_2",
        params=(
            backbone_param("wide_resnet50_2", "CNN whose ImageNet features describe each patch."),
            Param(
                "layers",
                "",
                "Comma-separated feature layers; empty = the backbone's stride-8 and stride-16 stages "
                "(WRN-50: layer2, layer3; EfficientNet-Lite0: blocks.2, blocks.4).",
                "str",
            ),
            Param(
                "coreset_sampling_ratio",
                0.1,
                "Fraction of training patches kept in the memory bank "
                "(paper: 0.1; smaller = faster, slightly less accurate).",
                "float",
                min=0.0001,
                max=1.0,
            ),
            Param(
                "max_bank_size",
                MAX_BANK_SIZE,
                "Most patches kept in the memory bank, whatever the ratio (0 = no cap). "
                "Greedy picks are sequential, so a capped bank is the first picks of the uncapped one. Beyond "
                "this size pixel AUROC barely moves and image AUROC rises slowly, while fit and scoring time grow "
                "with the bank.",
                "int",
                min=0,
                max=10_000_000,
            ),
            Param(
                "coreset_method",
                "blocked",
                "'blocked': k-center greedy with matrix products (fast at millions of "
                "patches); 'anomalib': anomalib's exact pick sequence (pruned; slow beyond ~300k patches).",
                "choice",
                ("blocked", "anomalib"),
            ),
            Param("num_neighbors", 9, "Neighbours used to re-weight the anomaly score.", "int", min=1, max=50),
            image_size_param(follows_data=True),
        ),
        build=_build,
        stock_kwargs=lambda p, backbone: dict(
            backbone=backbone,
            layers=patchcore_layers(p),
            pre_trained=False,
            coreset_sampling_ratio=p["coreset_sampling_ratio"],
            num_neighbors=p["num_neighbors"],
        ),
        # No validation pass: PatchCore fits its bank at the end of the one epoch (anomalib's MemoryBankMixin), and the
        # run's thresholds come from its own test records, so anomalib's validation (a full scoring of the test set
        # with its slower nearest-neighbour search) only cost time: minutes at thousands of test images.
        trainer_kwargs=lambda p: {"max_epochs": 1, "limit_val_batches": 0, "num_sanity_val_steps": 0},
        train_batch_size=16,
        fit_phase="feature extraction",
        embedding_space=lambda p: f"patchcore-{p['backbone']}-{','.join(patchcore_layers(p))}",
        estimate=_estimate,
        follow_data=_follow_data,
        patch_features=_patch_features,
    )
)
