"""The fast predict path: a run's model loaded once, images decoded and scored in batches.

Stock anomalib goes through Lightning's ``Engine.predict`` (dataloaders, callbacks, visualisation). Here the
model is loaded once from its safetensors checkpoint (no pickle, so a checkpoint can't run code), images are
decoded with OpenCV, resized with the model's own pre-processor transform and run under
``torch.inference_mode`` — the same arithmetic, so the same scores. Test records are produced by this path
too, which is why an uploaded image and a test image of the same run are scored identically.

Where the time goes (profiled on 1024² grid PNGs, 2 cores) and what is done about it — each step gives the
same numbers as the stock step it replaces (tests/engine/test_inference.py, benchmarks/speed.py):

- decode: ``images.read_image`` lets Pillow read the EXIF orientation first, and for a PNG Pillow's
  ``getexif`` decodes the whole image to look for an eXIf chunk after the pixels — every PNG was decoded
  twice (9 ms of 18 ms for a 1024² grid image). ``images.read_image_fast`` walks the PNG chunk headers instead (no
  eXIf chunk, no orientation in XMP/text chunks → orientation 1, as Pillow would find) and decodes once with
  OpenCV; anything unusual (other formats, 16 bit, palette, alpha, EXIF, damaged files) goes through
  ``images.read_image`` unchanged.
- pre-process: a grey image stored as RGB has three equal channels; the antialiased resize is per channel,
  so it is done once and copied (a third of the work, identical values).
- PatchCore backbone: timm's EfficientNet feature model runs all seven blocks although PatchCore uses
  blocks.2 and blocks.4; ``truncated_features`` stops after the last block used (bit-identical features).
  The input in channels-last memory order lets oneDNN use its NHWC kernels (features equal to ~1e-6
  relative). Together 25-30 → 17 ms for EfficientNet-Lite0 at 256² (1 or 2 threads).
- PatchCore nearest neighbour: anomalib builds the whole (patches × memory bank) distance matrix per
  1,024 patches and then takes its minimum; ``nearest_patch`` does the same arithmetic in 8 MB tiles that
  stay in cache, keeping a running minimum (same values, same first-index ties, far less memory for large
  memory banks). faiss was not used: an exact flat index does the same matrix product.
- PatchCore anomaly map: the 33×33 Gaussian blur is separable; two 1-D passes replace one 2-D convolution
  (~16× fewer operations; maps agree to float rounding, ~1e-6 relative).
- every timm backbone: BatchNorm folded into its convolution (``core.models.folding``) and TensorFlow's "same"
  padding done by the convolution instead of a padded copy (``core.models.padding``).
- one image at a time: with OpenMP threads that sleep while they wait (the product's setting for a shared
  machine), a second thread costs a wake-up per operation, so the first single image measures 1 thread against
  all and keeps the faster (``core.runtime.fastest_threads``; batches use all threads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.data import images
from core.errors import ImageError, RunError, WeightsError, WorkbenchError
from core.models import create_model, get_entry
from core.models.folding import fold_batchnorm
from core.models.knn import nearest_patch
from core.models.padding import static_same_padding
from core.models.pooling import pyramid
from core.runtime import fastest_threads, threads
from core.store.artifacts import RunArtifacts, read_json, write_json
from core.store.versions import RunVersions


def save_weights(module, run_dir: Path) -> None:
    """The module's tensors as safetensors (loading a run never executes code from a file)."""
    from safetensors.torch import save_file  # safetensors: only when weights are written

    state = {
        k: v.detach().contiguous().cpu()
        for k, v in module.state_dict().items()
        if isinstance(v, torch.Tensor) and k.startswith(("model.", "pre_processor.", "post_processor."))
    }
    tmp = run_dir / "model.tmp.safetensors"
    save_file(state, str(tmp))
    tmp.replace(run_dir / "model.safetensors")


def save_checkpoint(module, run_dir: Path, model_name: str, params: dict, extra: dict | None = None) -> None:
    save_weights(module, run_dir)
    write_json(run_dir / "model.json", {"model": model_name, "params": params, **(extra or {})})


def calibrate_post_processor(
    module, scores: np.ndarray, maps: np.ndarray, image_threshold: float | None, pixel_threshold: float | None
) -> bool:
    """Fill anomalib's post-processor statistics (score/map min-max, thresholds) from the test pass when the fit
    did not compute them (PatchCore skips anomalib's validation pass, whose set is this same test set), so the
    checkpoint normalises like one anomalib trained. True if anything was filled."""
    post = getattr(module, "post_processor", None)
    if post is None or not hasattr(post, "image_min") or not torch.isnan(post.image_min).item():
        return False
    values = {
        "image_min": float(np.min(scores)),
        "image_max": float(np.max(scores)),
        "pixel_min": float(np.min(maps)),
        "pixel_max": float(np.max(maps)),
        "_image_threshold": image_threshold,
        "_pixel_threshold": pixel_threshold,
    }
    for name, value in values.items():
        if value is not None:
            getattr(post, name).fill_(value)
    return True


def _load_state(module, state: dict[str, torch.Tensor]) -> None:
    """load_state_dict, first resizing buffers that start empty (PatchCore's memory bank, EfficientAD's
    statistics) so their trained shapes fit."""
    own = module.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            owner_name, _, attr = key.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            if attr in owner._buffers:
                owner._buffers[attr] = torch.empty_like(value)
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.startswith("model.")]
    if missing:
        raise WeightsError(f"Checkpoint is missing {len(missing)} model tensors (e.g. {missing[0]}).")


@dataclass
class Prediction:
    name: str
    score: float | None = None
    is_anomalous: bool | None = None
    anomaly_map: np.ndarray | None = None  # float32, model resolution
    image: np.ndarray | None = None  # the decoded RGB image
    error: str | None = None


# ---------------------------------------------------------------------------------------------- pre-processing


def _steps(transform) -> list:
    from torchvision.transforms.v2 import Compose  # torchvision: ~1.5 s, comes with the model, not this module

    return list(transform.transforms) if isinstance(transform, Compose) else [transform]


def _per_channel(step) -> bool:
    """Transforms that treat every channel alike (so a grey image can be transformed once)."""
    from torchvision.transforms.v2 import CenterCrop, Resize  # torchvision: comes with the model, not this module

    return isinstance(step, (Resize, CenterCrop))


def preprocess_images(rgbs: list[np.ndarray], transform) -> torch.Tensor:
    """uint8 HxWx3 images (any sizes) → ``transform`` applied to each as float 0..1 (1, 3, H, W); a (B, 3, h, w) batch.

    A grey image stored as RGB (three equal channels) goes through the per-channel steps once and is copied
    to three channels before the first other step (e.g. Normalize): the same values for a third of the work.
    """
    steps = _steps(transform) if transform is not None else []
    out = []
    for rgb in rgbs:
        rgb = np.asarray(rgb)
        grey = (
            rgb.ndim == 3
            and rgb.shape[2] == 3
            and np.array_equal(rgb[..., 0], rgb[..., 1])
            and np.array_equal(rgb[..., 0], rgb[..., 2])
        )
        if grey:
            tensor = torch.from_numpy(np.ascontiguousarray(rgb[..., 0]))[None, None].float().div_(255.0)
            i = 0
            while i < len(steps) and _per_channel(steps[i]):
                tensor = steps[i](tensor)
                i += 1
            tensor = tensor.expand(-1, 3, -1, -1).contiguous()
            for step in steps[i:]:
                tensor = step(tensor)
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
            tensor = transform(tensor) if transform is not None else tensor
        out.append(tensor)
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------- PatchCore


class SeparableBlur(torch.nn.Module):
    """anomalib's ``GaussianBlur2d`` (reflect padding, 'same' size) as two 1-D convolutions."""

    def __init__(self, blur) -> None:
        super().__init__()
        kernel2d = blur.kernel[0, 0].double()
        # The 2-D kernel is the normalised outer product k·kᵀ, so its row sums are k (with sum(k) = 1).
        self.register_buffer("kh", kernel2d.sum(dim=0).float().view(1, 1, 1, -1), persistent=False)
        self.register_buffer("kv", kernel2d.sum(dim=1).float().view(1, 1, -1, 1), persistent=False)
        self.padding_shape = blur.padding_shape
        self.border_type = blur.border_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = F.pad(x, self.padding_shape, mode=self.border_type)
        x = F.conv2d(F.conv2d(x.reshape(b * c, 1, *x.shape[-2:]), self.kv), self.kh)
        return x.reshape(b, c, h, w)


def _fast_patchcore_ok(model) -> bool:
    # anomalib: ~5 s to import; it comes with the model, not with this module
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    blur = getattr(getattr(model, "anomaly_map_generator", None), "blur", None)
    return (
        isinstance(model, PatchcoreModel)
        and model.tiler is None
        and blur is not None
        and getattr(blur, "padding", "same") == "same"
        and model.memory_bank.numel() > 0
    )


def truncated_features(extractor):
    """``extractor`` (anomalib's TimmFeatureExtractor) as a function that stops after the last block whose
    output is used. timm's EfficientNet feature model runs every block (blocks.5 and blocks.6 too) even when
    only blocks.2 and blocks.4 are returned; the blocks before are the same modules on the same input, so
    the features are bit-identical. Other backbones are returned unchanged (timm's generic feature wrapper
    already stops early)."""
    from timm.models.efficientnet import EfficientNetFeatures  # timm is pinned (requirements.txt)

    net = getattr(extractor, "feature_extractor", None)
    if (
        not isinstance(net, EfficientNetFeatures)
        or net.feature_hooks is not None
        or getattr(extractor, "_uses_intermediates", False)
        or net.grad_checkpointing
    ):
        return extractor
    stages = net._stage_out_idx
    needed = net.blocks[: max(stages)]

    def features(x: torch.Tensor) -> dict:
        x = net.bn1(net.conv_stem(x))
        out = [x] if 0 in stages else []
        for i, block in enumerate(needed):
            x = block(x)
            if i + 1 in stages:
                out.append(x)
        return dict(zip(extractor.layers, out, strict=True))

    return features


def stop_early(net) -> bool:
    """Make a timm EfficientNet feature model stop after the last block whose output is used, in place (its
    ``forward`` is replaced; the same modules on the same input, so the features are bit-identical). timm runs
    every block even when only early ones are returned; an exported graph drops the unused ones by itself, which
    was most of OpenVINO's lead over the torch path for PaDiM, STFPM and FastFlow. False: nothing to cut."""
    from timm.models.efficientnet import EfficientNetFeatures  # timm is pinned (requirements.txt)

    if not isinstance(net, EfficientNetFeatures) or net.feature_hooks is not None or net.grad_checkpointing:
        return False
    stages = net._stage_out_idx
    needed = net.blocks[: max(stages)]
    if len(needed) == len(net.blocks):
        return False

    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        x = net.bn1(net.conv_stem(x))
        out = [x] if 0 in stages else []
        for i, block in enumerate(needed):
            x = block(x)
            if i + 1 in stages:
                out.append(x)
        return out

    net.forward = forward
    return True


def mahalanobis(embedding: torch.Tensor, stats: list[torch.Tensor]) -> torch.Tensor:
    """anomalib 2.7's PaDiM ``AnomalyMapGenerator.compute_distance`` with the per-location differences made
    contiguous before the batched product: the same numbers (bit-identical here), but torch then runs one batched
    GEMM instead of 4,096 small strided ones — 50 → 23 ms per 256² image, 179 → 35 ms per batch of 4 (2 cores)."""
    batch, channel, height, width = embedding.shape
    mean, inv_covariance = stats
    delta = (embedding.reshape(batch, channel, height * width) - mean).permute(2, 0, 1).contiguous()
    distances = (torch.bmm(delta, inv_covariance) * delta).sum(2).permute(1, 0)
    return distances.reshape(batch, 1, height, width).clamp(0).sqrt()


def speed_up(model: torch.nn.Module) -> list[str]:
    """The fast path of a backbone model other than PatchCore, in place and value-preserving: every timm
    EfficientNet feature model stops early (``stop_early``), PaDiM's Mahalanobis distance runs as one batched
    product (``mahalanobis``), and anomalib's 2-D Gaussian blurs run as two 1-D convolutions (``SeparableBlur``).
    Returns the names of the modules changed."""
    # anomalib: ~5 s to import; it comes with the model, not with this module
    from anomalib.models.components.filters import GaussianBlur2d
    from anomalib.models.image.padim.anomaly_map import AnomalyMapGenerator as PadimMap

    changed = []
    for name, module in list(model.named_modules()):
        if stop_early(module):
            changed.append(name)
        elif isinstance(module, PadimMap):
            module.compute_distance = mahalanobis
            changed.append(name)
        elif isinstance(module, GaussianBlur2d) and getattr(module, "padding", "same") == "same":
            # a bound method, not a module: the model's state dict (saved again after calibration) stays as it is
            module.forward = SeparableBlur(module).forward
            changed.append(name)
    return changed


class FastPatchcore:
    """anomalib 2.7's ``PatchcoreModel.forward`` in eval mode with the slow steps replaced (channels-last
    backbone input, ``truncated_features``, ``nearest_patch``, ``SeparableBlur``); everything else calls the
    model's own methods."""

    def __init__(self, model) -> None:
        self.model = model
        fold_batchnorm(model.feature_extractor)  # as in the fit (core.models.patchcore): the bank's own features
        static_same_padding(model.feature_extractor)
        self.features = truncated_features(model.feature_extractor)
        self.blur = SeparableBlur(model.anomaly_map_generator.blur)
        self.bank_sq = model.memory_bank.pow(2).sum(dim=-1)

    def __call__(self, input_tensor: torch.Tensor):
        return self.run(input_tensor)[0]

    def embed(self, input_tensor: torch.Tensor) -> torch.Tensor:
        """The patch embedding (B, D, h, w) PatchCore scores: backbone, pooling, layers concatenated."""
        m = self.model
        input_tensor = input_tensor.type(m.memory_bank.dtype)
        # channels-last input: oneDNN's NHWC convolutions; half the backbone time on this CPU, same values.
        features = self.features(input_tensor.contiguous(memory_format=torch.channels_last))
        features = {layer: m.feature_pooler(feature).contiguous() for layer, feature in features.items()}
        return m.generate_embedding(features)

    def run(self, input_tensor: torch.Tensor):
        """(anomalib's InferenceBatch, the patch embedding (B, D, h, w) it scored): the embedding is what the
        similarity index pools, so indexing needs no second backbone pass."""
        from anomalib.data import InferenceBatch  # anomalib: comes with the model, not with this module

        m = self.model
        output_size = input_tensor.shape[-2:]
        grid_embedding = self.embed(input_tensor)
        batch_size, _, width, height = grid_embedding.shape
        embedding = m.reshape_embedding(grid_embedding)
        patch_scores, locations = nearest_patch(embedding, m.memory_bank, self.bank_sq)
        patch_scores = patch_scores.reshape((batch_size, -1))
        locations = locations.reshape((batch_size, -1))
        pred_score = m.compute_anomaly_score(patch_scores, locations, embedding)
        patch_scores = patch_scores.reshape((batch_size, 1, width, height))
        anomaly_map = self.blur(F.interpolate(patch_scores, size=(output_size[0], output_size[1])))
        return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map), grid_embedding


# ---------------------------------------------------------------------------------------------- models


class RunModel:
    """What every scorer of a run shares (PyTorch here, OpenVINO in core.engine.export): the run's metadata,
    decoding, thresholds and the batched ``predict``. Subclasses provide ``preprocess`` and ``forward``."""

    run_dir: Path
    model_name: str
    params: dict
    image_size: int
    image_threshold: float | None
    pixel_threshold: float | None
    map_range: tuple
    version: int = 1
    model_dir: Path
    path_name = "torch"

    def _read_run(self, run_dir: Path, version: int | None = None) -> RunArtifacts:
        """Read the run's metadata; returns the artifacts of the model files of ``version`` (default: the run's
        current version, core.store.versions). Thresholds and test records stay the run's (version 1's)."""
        versions = RunVersions(run_dir)
        self.version = versions.get(version).version
        self.model_dir = versions.model_dir(self.version)
        art = RunArtifacts(self.model_dir)
        spec = read_json(art.model_json)
        if spec is None or not art.checkpoint.is_file():
            raise RunError(f"Run folder {run_dir} has no trained model (the run did not finish training).")
        self.run_dir = Path(run_dir)
        art = RunArtifacts(self.run_dir) if self.model_dir == self.run_dir else art
        self.model_name = spec["model"]
        self.params = spec["params"]
        self.image_size = int(self.params.get("image_size", 256))
        metrics = RunArtifacts(self.run_dir).metrics()
        self.image_threshold = metrics.get("image_threshold")
        self.pixel_threshold = metrics.get("pixel_threshold")
        self.map_range = tuple(spec.get("map_range", (0.0, 1.0)))
        return art

    @staticmethod
    def read_image(source, name: str | None = None) -> np.ndarray:
        """Decode a file, bytes or an upload (``images.read_image`` semantics, faster for plain PNGs)."""
        return images.read_image_fast(source, name=name)

    def preprocess(self, rgbs: list[np.ndarray]):
        raise NotImplementedError

    def forward(self, batch) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def verdict(self, score: float) -> bool | None:
        return None if self.image_threshold is None else bool(score >= self.image_threshold)

    def predict(self, sources: list, names: list[str] | None = None, batch_size: int = 8) -> list[Prediction]:
        """Score files, bytes or arrays. A bad file gets a Prediction with ``error``; the rest still run."""
        names = names or [str(s) if isinstance(s, (str, Path)) else f"image {i + 1}" for i, s in enumerate(sources)]
        preds: list[Prediction] = []
        for name, source in zip(names, sources, strict=False):
            try:
                rgb = source if isinstance(source, np.ndarray) else self.read_image(source, name=name)
                preds.append(Prediction(name=name, image=rgb))
            except ImageError as exc:
                preds.append(Prediction(name=name, error=str(exc)))
        ok = [p for p in preds if p.error is None]
        for start in range(0, len(ok), batch_size):
            chunk = ok[start : start + batch_size]
            scores, maps = self.forward(self.preprocess([p.image for p in chunk]))
            for p, s, m in zip(chunk, scores, maps, strict=False):
                p.score, p.anomaly_map, p.is_anomalous = float(s), m, self.verdict(float(s))
        return preds

    def model_files(self) -> list[Path]:
        """The files this scorer loads (for the model size on disk)."""
        return [RunArtifacts(self.model_dir).checkpoint]

    def model_mb(self) -> float:
        return sum(p.stat().st_size for p in self.model_files()) / 2**20


class LoadedModel(RunModel):
    """A run's model, ready to score images. Build once per run and reuse (pages cache it).

    ``fast=False`` runs anomalib's own ``model.forward`` unchanged (the reference the fast path is checked
    against); the default replaces PatchCore's nearest-neighbour search and map blur with equivalent,
    faster code (see the module docstring). ``version``: which of the run's versions (core.store.versions) to
    load; default the run's current one."""

    def __init__(self, run_dir: Path, fast: bool = True, version: int | None = None) -> None:
        from safetensors.torch import load_file  # safetensors: only when a model is loaded

        self._read_run(run_dir, version)
        self.module = create_model(self.model_name, self.params, pre_trained=False)
        _load_state(self.module, load_file(str(RunArtifacts(self.model_dir).checkpoint)))
        self.module.eval()
        self.fast = fast
        self._fast_forward = (
            FastPatchcore(self.module.model) if fast and _fast_patchcore_ok(self.module.model) else None
        )
        if fast and self._fast_forward is None:
            self.sped_up = speed_up(self.module.model)
        if fast and self._fast_forward is None and get_entry(self.model_name).channels_last:
            # Channels-last weights and input select oneDNN's NHWC convolutions (ModelEntry.channels_last).
            self.module.model.to(memory_format=torch.channels_last)
            model = self.module.model
            self._fast_forward = lambda batch: model(batch.contiguous(memory_format=torch.channels_last))
        if fast and not isinstance(self._fast_forward, FastPatchcore):
            # after the channels-last conversion: the folded weights take the convolutions' memory format
            self.folded = fold_batchnorm(self.module.model)
            static_same_padding(self.module.model)
        self.path_name = "torch" if fast else "torch-reference"
        # torch threads for one image at a time, measured on the first one (None: not yet, and batches use all)
        self.single_image_threads: int | None = None

    # -- steps, separately timed by the latency benchmark -------------------------------------------
    def preprocess(self, rgbs: list[np.ndarray]) -> torch.Tensor:
        """uint8 HxWx3 images (any sizes) → the model's input batch."""
        transform = self.module.pre_processor.transform
        if not self.fast:
            out = []
            for rgb in rgbs:
                tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
                out.append(transform(tensor.unsqueeze(0)))
            return torch.cat(out)
        with threads(self.single_image_threads if len(rgbs) == 1 else None):
            return preprocess_images(rgbs, transform)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Raw image scores (B,) and anomaly maps (B, H, W) at model resolution."""
        run = self._fast_forward or self.module.model
        if batch.shape[0] != 1 or not self.fast:
            return _scores_and_maps(run(batch), batch.shape[0])
        if self.single_image_threads is None:  # measured on the first single image (core.runtime.fastest_threads)
            self.single_image_threads = fastest_threads(lambda: run(batch))
        with threads(self.single_image_threads):
            return _scores_and_maps(run(batch), 1)

    @torch.inference_mode()
    def forward_features(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """:meth:`forward` plus the patch features (B, D, h, w) the model scored, from the same pass where the
        model allows it (PatchCore's fast path, a hook on the registry's ``feature_submodule``); otherwise one
        more pass of the registry's ``patch_features``."""
        if isinstance(self._fast_forward, FastPatchcore):
            result, feats = self._fast_forward.run(batch)
            return (*_scores_and_maps(result, batch.shape[0]), feats)
        entry = get_entry(self.model_name)
        captured: list = []
        hook = None
        if entry.patch_features is None and entry.feature_submodule:  # capture the scoring pass's features
            hook = getattr(self.module.model, entry.feature_submodule).register_forward_hook(
                lambda _m, _i, out: captured.append(out)
            )
        try:
            scores, maps = self.forward(batch)
        finally:
            if hook is not None:
                hook.remove()
        return scores, maps, pyramid(captured[0]) if len(captured) == 1 else self.patch_features(batch)

    @torch.inference_mode()
    def patch_features(self, batch: torch.Tensor) -> torch.Tensor:
        """The patch features (B, D, h, w) alone: the backbone part of the model, no scoring (the cheap pass
        for images that need only their similarity vectors)."""
        if isinstance(self._fast_forward, FastPatchcore):
            return self._fast_forward.embed(batch)
        entry = get_entry(self.model_name)
        if entry.patch_features is not None:
            return entry.patch_features(self.module.model, batch)
        if entry.feature_submodule:
            return pyramid(getattr(self.module.model, entry.feature_submodule)(batch))
        raise WorkbenchError(f"Similarity search does not support model '{entry.label}' yet.")


def _scores_and_maps(result, n: int) -> tuple[np.ndarray, np.ndarray]:
    scores = result.pred_score.reshape(-1).float().numpy()
    maps = result.anomaly_map.reshape(n, *result.anomaly_map.shape[-2:]).float().numpy()
    return scores, maps
