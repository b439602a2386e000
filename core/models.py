"""Model registry: a name → an anomalib model with documented, validated parameters.

In the manner of timm's ``create_model``: ``create_model("patchcore", {"coreset_sampling_ratio": 0.01})``.
Each entry declares its parameters (default, help, range) so the CLI and the training page build their
forms from the registry, and adding another anomalib image model is one ``register(...)`` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core.config import Settings, settings as current_settings
from core.errors import RunCancelled, WeightsError, WorkbenchError
from core import weights


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    help: str
    kind: str = "float"  # "int" | "float" | "choice" | "str"
    choices: tuple = ()
    min: float | None = None
    max: float | None = None


@dataclass
class Hooks:
    """Callbacks a run gives its model: progress reporting and cooperative cancellation."""

    progress: Callable[[str, int, int], None] = lambda phase, done, total: None
    should_stop: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class ModelEntry:
    name: str
    label: str
    description: str
    params: tuple[Param, ...]
    build: Callable[[dict, Settings, Hooks, bool], Any]  # (params, settings, hooks, pre_trained) → module
    trainer_kwargs: Callable[[dict], dict] = lambda p: {}
    train_batch_size: int = 16
    embedding_space: Callable[[dict], str] = lambda p: ""  # names the feature space (for the vector store)
    warnings: Callable[[dict], list[str]] = lambda p: []  # shown wherever the run's results are shown
    # (params, dataset profile, machine speed factor) -> core.estimate.Estimate, before a run starts
    estimate: Callable[[dict, Any, float], Any] | None = None


REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    REGISTRY[entry.name] = entry
    return entry


def get_entry(name: str) -> ModelEntry:
    key = name.lower().replace("-", "").replace("_", "")
    for entry in REGISTRY.values():
        if entry.name.replace("_", "") == key:
            return entry
    raise WorkbenchError(f"Unknown model '{name}'. Available models: {', '.join(REGISTRY)}.")


def resolve_params(name: str, params: dict | None = None, strict: bool = True) -> dict:
    """Fill defaults and validate types and ranges. Unknown names are an error for new runs (``strict``);
    for stored runs they are dropped, so a run made by an older version still loads."""
    entry = get_entry(name)
    params = dict(params or {})
    known = {p.name: p for p in entry.params}
    unknown = set(params) - set(known)
    if not strict:
        params = {k: v for k, v in params.items() if k in known}
    elif unknown:
        raise WorkbenchError(
            f"Unknown parameter(s) for {entry.label}: {', '.join(sorted(unknown))}. Known: {', '.join(known)}."
        )
    out = {}
    for p in entry.params:
        default = p.default() if callable(p.default) else p.default
        value = params.get(p.name, default)
        if value is None or value == "":
            out[p.name] = default
            continue
        try:
            if p.kind == "int":
                value = int(value)
            elif p.kind == "float":
                value = float(value)
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise WorkbenchError(f"{entry.label}: parameter '{p.name}' must be a {p.kind}, got {value!r}.") from None
        if p.kind == "choice" and p.choices and value not in p.choices:
            raise WorkbenchError(f"{entry.label}: '{p.name}' must be one of {', '.join(map(str, p.choices))}.")
        if p.min is not None and value < p.min or p.max is not None and value > p.max:
            raise WorkbenchError(f"{entry.label}: '{p.name}' must be between {p.min} and {p.max}, got {value}.")
        out[p.name] = value
    return out


def create_model(name: str, params: dict | None = None, cfg: Settings | None = None,
                 hooks: Hooks | None = None, pre_trained: bool = True):
    """An anomalib Lightning module for ``name``. ``pre_trained=False`` builds the bare architecture
    (used when loading a run's own checkpoint, which holds every weight)."""
    entry = get_entry(name)
    params = resolve_params(entry.name, params, strict=pre_trained)
    return entry.build(params, cfg or current_settings(), hooks or Hooks(), pre_trained)


# ---- PatchCore ------------------------------------------------------------------------------------------

# See benchmarks/scaling.py (README "Own images at scale"): on 1,000 real 256² images (1 M patches) image and pixel
# AUROC rose by < 0.005 from 20k to 100k bank entries while selection time and inference time grow with the bank.
MAX_BANK_SIZE = 20_000

def _resize_normalize(image_size: int, mean=None, std=None):
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    steps = [Resize((image_size, image_size), antialias=True)]
    if mean is not None:
        steps.append(Normalize(mean=list(mean), std=list(std)))
    return PreProcessor(transform=Compose(steps))


def _patchcore_layers(p: dict) -> list[str]:
    layers = [s.strip() for s in str(p["layers"]).split(",") if s.strip()]
    return layers or list(weights.get_backbone(p["backbone"]).layers)


def _build_patchcore(p: dict, cfg: Settings, hooks: Hooks, pre_trained: bool):
    from anomalib.models import Patchcore

    backbone = weights.get_backbone(p["backbone"])
    # With pre_trained=False the architecture is all that's needed: a run's checkpoint supplies the weights.
    backbone_arg = weights.resolve_backbone(backbone.name, cfg) if pre_trained else backbone.name

    class WorkbenchPatchcore(Patchcore):
        """anomalib's PatchCore with a fast, exact coreset step that reports progress and can be cancelled."""

        def fit(self) -> None:
            from core.coreset import concat_and_clear, select_coreset
            from core.memory import heap_limited

            embedding = concat_and_clear(self.model.embedding_store)
            with heap_limited():  # see core/memory.py
                self.model.memory_bank, self.coreset_info = select_coreset(
                    embedding, self.coreset_sampling_ratio, max_size=p["max_bank_size"] or None,
                    method=p["coreset_method"],
                    progress=lambda done, total: hooks.progress("coreset selection", done, total),
                    should_stop=hooks.should_stop,
                )

    try:
        return WorkbenchPatchcore(
            backbone=backbone_arg,
            layers=_patchcore_layers(p),
            pre_trained=pre_trained,
            coreset_sampling_ratio=p["coreset_sampling_ratio"],
            num_neighbors=p["num_neighbors"],
            pre_processor=_resize_normalize(p["image_size"], backbone.mean, backbone.std),
            evaluator=False,
            visualizer=False,
        )
    except (RuntimeError, OSError) as exc:  # timm raises these for missing/unreachable weights
        raise WeightsError(f"Could not load backbone '{backbone.name}': {exc}") from exc


# Reference-machine constants of the PatchCore estimate, from benchmarks/scaling.py (README "Own images at scale").
DECODE_S_PER_MEGAPIXEL = 0.009  # PNG decode + resize
BLOCKED_GREEDY_EFFICIENCY = 0.8  # the blocked coreset's speed relative to core.estimate's probe (1 M patches: 0.8)
ANOMALIB_GREEDY_S_PER_PICK_PATCH = 6e-8  # anomalib-exact sampler at ~1 M patches (pruning helps less there)
FIT_OVERHEAD_S = 3.0  # model set-up and Lightning around the fit
RUN_OVERHEAD_S = 10.0  # process start (torch, anomalib imports), writing results
TORCH_BASE_MB = 1450.0  # a run's process with torch, anomalib, Lightning and a backbone loaded


def _estimate_patchcore(p: dict, prof, slow: float):
    from core.estimate import Estimate, REFERENCE_GFLOPS

    backbone = weights.get_backbone(p["backbone"])
    dims, stride = backbone.feature_dims(_patchcore_layers(p))
    dims = dims or 512
    side = p["image_size"] // stride
    per_image = side * side
    patches = prof.n_train * per_image
    bank = int(patches * p["coreset_sampling_ratio"])
    if p["max_bank_size"]:
        bank = min(bank, p["max_bank_size"])
    flops = REFERENCE_GFLOPS * 1e9 / slow
    extract = (backbone.extract_s_256 * (p["image_size"] / 256) ** 2 + DECODE_S_PER_MEGAPIXEL * prof.megapixels) * slow
    jl = int(4 * np.log(max(patches, 2)) / (0.9 ** 2 / 2 - 0.9 ** 3 / 3))
    if p["coreset_method"] == "anomalib":
        sel_dims = jl
        coreset = ANOMALIB_GREEDY_S_PER_PICK_PATCH * patches * bank * slow
        extra_mb = patches * sel_dims * 4 * 2 / 2**20  # projected features and a pass buffer
    else:
        sel_dims = jl
        coreset = patches * bank * sel_dims * 2 / (flops * BLOCKED_GREEDY_EFFICIENCY) + 1.5e-4 * bank * slow
        extra_mb = patches * 12 / 2**20 + 160  # bounds and norms per patch; the pool and two chunk buffers
    score = extract + per_image * bank * dims * 2 / flops  # one test image: features + nearest-neighbour search
    parts = {
        "feature extraction": prof.n_train * extract,
        "coreset selection": coreset,
        "testing": prof.n_test * score,
        "timing and indexing": 48 * score + prof.n_images * extract,
    }
    fit = FIT_OVERHEAD_S * slow + parts["feature extraction"] + coreset
    peak = TORCH_BASE_MB + patches * dims * 4 / 2**20 + extra_mb
    return Estimate(seconds=RUN_OVERHEAD_S * slow + fit + parts["testing"] + parts["timing and indexing"],
                    fit_seconds=fit, peak_mb=peak, parts=parts,
                    facts={"train images": prof.n_train, "test images": prof.n_test, "patches": patches,
                           "bank size": bank, "feature dims": dims})


register(ModelEntry(
    name="patchcore",
    estimate=_estimate_patchcore,
    label="PatchCore",
    description="Memory bank of pretrained patch features; no training, one pass over normal images.",
    params=(
        Param("backbone", lambda: weights.default_backbone(), "CNN whose ImageNet features describe each patch.", "choice",
              tuple(weights.BACKBONES)),
        Param("layers", "", "Comma-separated feature layers; empty = the backbone's usual pair.", "str"),
        Param("coreset_sampling_ratio", 0.1, "Fraction of training patches kept in the memory bank "
              "(paper: 0.1; smaller = faster, slightly less accurate).", "float", min=0.0001, max=1.0),
        Param("max_bank_size", MAX_BANK_SIZE, "Most patches kept in the memory bank, whatever the ratio (0 = no cap). "
              "Greedy picks are sequential, so a capped bank is the first picks of the uncapped one; on 1,000 "
              "images quality stops rising near this size while time keeps growing with it.", "int", min=0,
              max=10_000_000),
        Param("coreset_method", "blocked", "'blocked': k-center greedy with matrix products (fast at millions of "
              "patches); 'anomalib': anomalib's exact pick sequence (pruned; slow beyond ~300k patches).", "choice",
              ("blocked", "anomalib")),
        Param("num_neighbors", 9, "Neighbours used to re-weight the anomaly score.", "int", min=1, max=50),
        Param("image_size", 256, "Images are resized to this square size.", "int", min=64, max=1024),
    ),
    build=_build_patchcore,
    # No validation pass: PatchCore fits its bank at the end of the one epoch (anomalib's MemoryBankMixin), and the
    # run's thresholds come from its own test records, so anomalib's validation (a full scoring of the test set
    # with its slower nearest-neighbour search) only cost time: minutes at thousands of test images.
    trainer_kwargs=lambda p: {"max_epochs": 1, "limit_val_batches": 0, "num_sanity_val_steps": 0},
    train_batch_size=16,
    embedding_space=lambda p: f"patchcore-{p['backbone']}-{','.join(_patchcore_layers(p))}",
))


# ---- EfficientAD ----------------------------------------------------------------------------------------

UNTRAINED_TEACHER_WARNING = (
    "EfficientAD with an UNTRAINED (random) teacher: not a real EfficientAD result. "
    "Use only to exercise the pipeline."
)


def _build_efficientad(p: dict, cfg: Settings, hooks: Hooks, pre_trained: bool):
    from anomalib.models import EfficientAd

    size = p["model_size"]
    untrained = p["teacher"] == "untrained"
    imagenet_dir = p["imagenet_dir"] or (str(cfg.imagenet_dir) if cfg.imagenet_dir else "")
    if pre_trained:
        if not untrained and not weights.efficientad_teacher_available(size) and cfg.offline:
            raise WeightsError(
                f"EfficientAD's pretrained teacher ({size}) is not available offline. Put "
                f"pretrained_teacher_{size}.pth at {weights.efficientad_teacher_path(size)} "
                f"(`python -m core weights import pretrained_teacher_{size}.pth`) or go online so anomalib "
                "downloads it. (For a pipeline check only, choose teacher='untrained'.)"
            )
        if not imagenet_dir and cfg.offline:
            raise WorkbenchError(
                "EfficientAD needs a folder of natural images for its penalty loss (ImageNet or Imagenette: "
                "any folder with at least one sub-folder of images). Set AW_IMAGENET_DIR or the 'imagenet_dir' "
                "parameter; online, anomalib downloads Imagenette."
            )
    imagenet_dir = imagenet_dir or str(cfg.datasets_dir / "imagenette")

    class WorkbenchEfficientAd(EfficientAd):
        """EfficientAD that reports training steps and honours an explicit untrained-teacher choice."""

        def prepare_pretrained_model(self) -> None:
            if untrained:
                return  # the registry labels such runs everywhere they are shown
            super().prepare_pretrained_model()

        def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
            hooks.progress("training", self.global_step, self.trainer.max_steps)
            if hooks.should_stop():
                raise RunCancelled("cancelled by the user")

    return WorkbenchEfficientAd(
        imagenet_dir=imagenet_dir,
        model_size=size,
        lr=p["lr"],
        pre_processor=_resize_normalize(p["image_size"]),
        evaluator=False,
        visualizer=False,
    )


def _estimate_efficientad(p: dict, prof, slow: float):
    from core.estimate import Estimate
    from core.launch import EFFICIENTAD_S_PER_STEP

    step = EFFICIENTAD_S_PER_STEP[p["model_size"]] * (p["image_size"] / 256) ** 2 * slow
    per_image = 0.2 * (p["image_size"] / 256) ** 2 * slow  # forward pass of teacher, student and autoencoder
    parts = {"teacher statistics": prof.n_train * per_image, "training": p["max_steps"] * step,
             "validation and testing": 2 * prof.n_test * per_image, "timing and indexing": (48 + prof.n_images) * per_image}
    fit = FIT_OVERHEAD_S * slow + parts["teacher statistics"] + parts["training"] + prof.n_test * per_image
    return Estimate(seconds=RUN_OVERHEAD_S * slow + FIT_OVERHEAD_S * slow + sum(parts.values()), fit_seconds=fit, peak_mb=TORCH_BASE_MB + 700,
                    parts=parts, facts={"train images": prof.n_train, "test images": prof.n_test,
                                        "steps": p["max_steps"]})


register(ModelEntry(
    name="efficientad",
    estimate=_estimate_efficientad,
    label="EfficientAD",
    description="Student–teacher network plus autoencoder; trained for a number of steps.",
    params=(
        Param("model_size", "small", "Network size (on 2 CPU cores small is ~3× faster: 1.2 vs 3.8 s per step).",
              "choice", ("small", "medium")),
        # 500: about 10 minutes of steps on 2 CPU cores, so a default run with its testing stays within ~15 minutes;
        # on real grid, quality was still rising at 600 steps (measured with a random teacher only, as no pretrained
        # one is available offline: benchmarks/efficientad_steps.py), so more steps help where time allows.
        Param("max_steps", 500, "Training steps (paper: 70,000 on a GPU). On 2 CPU cores a small model takes "
              "~1.2 s per step, so 500 ≈ 10 minutes; a GPU is ~35× faster per step.", "int", min=1, max=200_000),
        Param("lr", 1e-4, "Adam learning rate.", "float", min=1e-6, max=1e-1),
        Param("image_size", 256, "Images are resized to this square size (EfficientAD needs ≥ 256).", "int",
              min=256, max=1024),
        Param("teacher", "pretrained", "'pretrained' = anomalib's distilled teacher (real results); "
              "'untrained' = random teacher, only to test the pipeline.", "choice", ("pretrained", "untrained")),
        Param("imagenet_dir", "", "Folder of natural images (≥ 1 sub-folder) for the penalty loss; empty = "
              "AW_IMAGENET_DIR, or Imagenette downloaded by anomalib when online.", "str"),
    ),
    build=_build_efficientad,
    trainer_kwargs=lambda p: {"max_steps": p["max_steps"], "max_epochs": -1},
    train_batch_size=1,  # EfficientAD's training step requires batch size 1
    embedding_space=lambda p: f"efficientad-{p['model_size']}-{p['teacher']}",
    warnings=lambda p: [UNTRAINED_TEACHER_WARNING] if p["teacher"] == "untrained" else [],
))


def model_warnings(name: str, params: dict) -> list[str]:
    return get_entry(name).warnings(resolve_params(name, params, strict=False))


def default_params(name: str) -> dict:
    """Defaults, with the backbone chosen from what this machine has."""
    return resolve_params(name, {})
