"""The model registry: a name → an anomalib model with documented, validated parameters.

In the manner of timm's ``create_model``: ``create_model("padim", {"backbone": "resnet18"})``. Each entry
declares everything the product needs to know about a model — its anomalib class, its parameters (default,
help, range), which backbone stages it takes features from, how long a run will take, how to pull patch
features for similarity search — so the CLI, the pages, reports and benchmarks are built from the registry and
never name a model. Adding a model is one ``register(...)`` call and one test.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.config import Settings
from core.config import settings as current_settings
from core.errors import WorkbenchError
from core.models import sizing, weights
from core.models.cost import DatasetProfile


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    help: str
    kind: str = "float"  # "int" | "float" | "choice" | "str"
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    auto: bool = False  # 0 is allowed and means "follow the data" (core.models.sizing)


@dataclass
class Hooks:
    """Callbacks a run gives its model: progress reporting and cooperative cancellation."""

    progress: Callable[[str, int, int], None] = lambda phase, done, total: None
    should_stop: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Cost:
    """What a run costs on the reference machine (2 CPU cores), per 256x256 image, measured on real MVTec grid
    by ``benchmarks/mvtec_benchmark.py`` (its table prints these per model). The estimate scales them by pixel
    count, image count, epochs and this machine's speed."""

    train_s: float  # per training image and epoch: forward (+ backward for trained models)
    score_s: float  # per test image: the forward pass that gives score and map
    fit_mb: float = 0.0  # memory held per training image during the fit (e.g. PaDiM's stored features)
    fixed_mb: float = 300.0  # model, optimiser and activations on top of the process


@dataclass(frozen=True)
class ModelEntry:
    name: str
    label: str
    description: str
    params: tuple[Param, ...]
    build: Callable[[dict, Settings, Hooks, bool], Any]  # (params, settings, hooks, pre_trained) → module
    anomalib_class: str = ""  # the anomalib.models class it trains (for docs and the stock baseline)
    # The Lightning class for these params, where it is not simply anomalib.models.<anomalib_class> (FastFlow on a
    # backbone anomalib doesn't name); the stock baseline uses it too.
    model_class: Callable[[dict], type] | None = None
    # Backbone stages it takes features from (1..4 = stride 4..32, see weights.Backbone) and anomalib's own
    # default backbone, kept online; offline a backbone on disk is used instead. Empty: no CNN backbone.
    backbone_stages: tuple[int, ...] = ()
    anomalib_backbone: str = ""
    # anomalib constructor arguments of the stock model with these params (the baseline benchmarks compare to)
    stock_kwargs: Callable[[dict, str], dict] | None = None
    trainer_kwargs: Callable[[dict], dict] = lambda p: {}
    train_batch_size: int = 16
    fit_phase: str = "training"  # what the progress bar says during the fit ("feature extraction" if no gradient)
    embedding_space: Callable[[dict], str] = lambda p: ""  # names the feature space (for the vector store)
    warnings: Callable[[dict], list[str]] = lambda p: []  # shown wherever the run's results are shown
    # (params, dataset profile, machine speed factor) -> core.engine.estimate.Estimate, before a run starts
    estimate: Callable[[dict, Any, float], Any] | None = None
    cost: Cost | None = None  # reference costs for the generic estimate
    # Patch features for similarity search: the torch model's submodule whose output in the scoring pass are
    # the image's features (captured there, no second pass), or a function (torch model, batch) -> (B, D, h, w).
    feature_submodule: str = ""
    patch_features: Callable[[Any, Any], Any] | None = None
    time_note: Callable[[dict], str] | None = None  # shown on the launch form next to the parameters
    # Inference in channels-last memory order (oneDNN's NHWC convolutions; EfficientAD-S at 256² on 2 cores:
    # 261 → 201 ms). Only where the model never .view()s a feature map (DFM does).
    channels_last: bool = False
    # Why anomalib's OpenVINO export is not offered for it (None: exported and checked like any model)
    export_note: str | None = None
    # Why it cannot train on this machine now (missing weights offline), or None; backbone models need a backbone
    unavailable: Callable[[Settings], str | None] | None = None
    # image_size = 0 ("follow the data"): the parameters to use for a dataset of this profile, and why
    follow_data: Callable[[dict, DatasetProfile | None], sizing.SizeChoice] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_patch_features(self) -> bool:
        """Whether similarity vectors can be pooled from this model's features (``feature_submodule`` or
        ``patch_features``)."""
        return self.patch_features is not None or bool(self.feature_submodule)


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
        out_of_range = p.min is not None and value < p.min or p.max is not None and value > p.max
        if out_of_range and not (p.auto and value == sizing.AUTO):
            raise WorkbenchError(f"{entry.label}: '{p.name}' must be between {p.min} and {p.max}, got {value}.")
        out[p.name] = value
    return out


def data_choice(name: str, params: dict, profile: DatasetProfile | None) -> sizing.SizeChoice | None:
    """What "follow the data" (image_size 0) picks for a dataset of this profile, or None where the size is given
    (or the model has no such rule)."""
    entry = get_entry(name)
    if entry.follow_data is None or params.get("image_size") != sizing.AUTO:
        return None
    return entry.follow_data(params, profile)


def resolve_for_data(
    name: str, params: dict | None, profile: DatasetProfile | None
) -> tuple[dict, sizing.SizeChoice | None]:
    """``resolve_params`` with "follow the data" settled for this dataset: what a new run records, and why."""
    p = resolve_params(name, params)
    choice = data_choice(name, p, profile)
    return ({**p, **choice.params} if choice else p), choice


def create_model(
    name: str,
    params: dict | None = None,
    cfg: Settings | None = None,
    hooks: Hooks | None = None,
    pre_trained: bool = True,
):
    """An anomalib Lightning module for ``name``. ``pre_trained=False`` builds the bare architecture
    (used when loading a run's own checkpoint, which holds every weight)."""
    entry = get_entry(name)
    params = resolve_params(entry.name, params, strict=pre_trained)
    choice = data_choice(entry.name, params, None)  # no data known here: the data-free size
    params = {**params, **choice.params} if choice else params
    return entry.build(params, cfg or current_settings(), hooks or Hooks(), pre_trained)


def stock_module(name: str, params: dict, cfg: Settings | None = None):
    """anomalib's own Lightning module for a run's model and parameters, with anomalib's stock post-processor,
    evaluator and visualiser: the baseline that benchmarks and score-equality tests compare with. Only the
    pre-processor is the run's (the one it was trained with). Weights: the caller loads the run's checkpoint."""
    entry = get_entry(name)
    if entry.stock_kwargs is None:
        raise WorkbenchError(f"{entry.label} has no stock anomalib baseline.")
    p = resolve_params(entry.name, params, strict=False)
    cls = (
        entry.model_class(p)
        if entry.model_class
        else getattr(importlib.import_module("anomalib.models"), entry.anomalib_class)
    )
    backbone = weights.get_backbone(p["backbone"]) if "backbone" in p else None
    pre = resize_normalize(p["image_size"], *((backbone.mean, backbone.std) if backbone else ()))
    # The weights the run trained with are on this machine; stock models that can skip loading them say so in
    # their kwargs (pre_trained=False), the others (STFPM's teacher) read them from there.
    arg = backbone_argument(p, cfg or current_settings(), True) if backbone else ""
    return cls(**entry.stock_kwargs(p, arg), pre_processor=pre)


def unavailable_reason(name: str, cfg: Settings | None = None) -> str | None:
    """None if ``name`` can train here right now with its defaults; otherwise why not (for the launch form)."""
    entry = get_entry(name)
    cfg = cfg or current_settings()
    if entry.unavailable is not None:
        return entry.unavailable(cfg)
    if entry.backbone_stages and not weights.available_backbones(cfg):
        return "no backbone weights on this machine and it is offline"
    return None


def runnable_models(cfg: Settings | None = None) -> list[str]:
    """The models that can train here right now: what 'every model' means on this machine."""
    return [name for name in REGISTRY if unavailable_reason(name, cfg) is None]


def model_warnings(name: str, params: dict) -> list[str]:
    return get_entry(name).warnings(resolve_params(name, params, strict=False))


def default_params(name: str) -> dict:
    """Defaults, with the backbone chosen from what this machine has."""
    return resolve_params(name, {})


def backbone_users(backbone: str) -> str:
    """Which models take ``backbone`` as anomalib's default ('PaDiM, STFPM (anomalib's default)')."""
    defaults = [e.label for e in REGISTRY.values() if e.anomalib_backbone == backbone]
    return ", ".join(defaults) + " (anomalib's default)" if defaults else "any backbone model (the offline default)"


# ---- shared pieces for entries --------------------------------------------------------------------------


def resize_normalize(image_size: int, mean=None, std=None):
    """anomalib PreProcessor: antialiased resize to a square, then the backbone's normalisation."""
    # anomalib/torchvision: not when the registry loads (page start-up)
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    steps = [Resize((image_size, image_size), antialias=True)]
    if mean is not None:
        steps.append(Normalize(mean=list(mean), std=list(std)))
    return PreProcessor(transform=Compose(steps))


def backbone_param(model_default: str, help_text: str = "ImageNet CNN whose features the model uses.") -> Param:
    """The 'backbone' parameter: anomalib's default for the model online, a backbone on disk offline."""
    return Param(
        "backbone",
        lambda: weights.default_backbone(preferred=model_default),
        help_text + f" anomalib's default: {model_default} (downloaded when online); offline, one on disk.",
        "choice",
        tuple(weights.BACKBONES),
    )


def image_size_param(default: int = 256, minimum: int = 64, follows_data: bool = False) -> Param:
    """The square size images are resized to; ``follows_data``: 0 (the default) lets the data choose it."""
    if follows_data:
        return Param(
            "image_size",
            sizing.AUTO,
            "Images are resized to this square size. 0 = follow the data: 512 px for images of "
            f"{sizing.HIGH_RES_SIDE} px and more (with a smaller bank), else 256 px; the run records the size used.",
            "int",
            min=minimum,
            max=1024,
            auto=True,
        )
    return Param("image_size", default, "Images are resized to this square size.", "int", min=minimum, max=1024)


def backbone_argument(p: dict, cfg: Settings, pre_trained: bool) -> str:
    """What to hand anomalib as ``backbone``: a local folder or a timm name to download when pre-trained weights are
    wanted (an error naming the missing files offline), the bare timm name for loading a checkpoint."""
    name = weights.get_backbone(p["backbone"]).name
    return weights.resolve_backbone(name, cfg) if pre_trained else name


def stage_layers(p: dict, stages: tuple[int, ...]) -> list[str]:
    return list(weights.get_backbone(p["backbone"]).stage_layers(stages))


def weights_overview(cfg: Settings | None = None) -> list[dict]:
    """One row per known backbone/teacher with where it comes from — for the CLI and the Home page."""
    cfg = cfg or current_settings()
    rows = []
    for name, backbone in weights.BACKBONES.items():
        folder = weights.local_backbone_dir(name, cfg)
        rows.append(
            {
                "weights": name,
                "used by": backbone_users(name),
                "status": weights.backbone_status(name, cfg),
                "location": str(folder) if folder else backbone.hub_id,
            }
        )
    for size in ("small", "medium"):
        path = weights.efficientad_teacher_path(size)
        rows.append(
            {
                "weights": f"EfficientAD teacher ({size})",
                "used by": "EfficientAD",
                "status": "local" if path.is_file() else ("missing" if cfg.offline else "download"),
                "location": str(path),
            }
        )
    return rows
