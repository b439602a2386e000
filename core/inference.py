"""The fast predict path: a run's model loaded once, images decoded and scored in batches.

Stock anomalib goes through Lightning's ``Engine.predict`` (dataloaders, callbacks, visualisation). Here the
model is loaded once from its safetensors checkpoint (no pickle, so a checkpoint can't run code), images are
decoded with OpenCV, resized with the model's own pre-processor transform and run under
``torch.inference_mode`` — the same arithmetic, so the same scores. Test records are produced by this path
too, which is why an uploaded image and a test image of the same run are scored identically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.artifacts import RunArtifacts, read_json, write_json
from core.errors import ImageError, RunError, WeightsError
from core import images


def save_checkpoint(module, run_dir: Path, model_name: str, params: dict, extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()
             if isinstance(v, torch.Tensor) and k.startswith(("model.", "pre_processor.", "post_processor."))}
    save_file(state, str(run_dir / "model.safetensors"))
    write_json(run_dir / "model.json", {"model": model_name, "params": params, **(extra or {})})


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


class LoadedModel:
    """A run's model, ready to score images. Build once per run and reuse (pages cache it)."""

    def __init__(self, run_dir: Path) -> None:
        from core.models import create_model

        art = RunArtifacts(run_dir)
        spec = read_json(art.model_json)
        if spec is None or not art.checkpoint.is_file():
            raise RunError(f"Run folder {run_dir} has no trained model (the run did not finish training).")
        self.run_dir = run_dir
        self.model_name = spec["model"]
        self.params = spec["params"]
        self.image_size = int(self.params.get("image_size", 256))
        from safetensors.torch import load_file

        self.module = create_model(self.model_name, self.params, pre_trained=False)
        _load_state(self.module, load_file(str(art.checkpoint)))
        self.module.eval()
        metrics = art.metrics()
        self.image_threshold = metrics.get("image_threshold")
        self.pixel_threshold = metrics.get("pixel_threshold")
        self.map_range = tuple(spec.get("map_range", (0.0, 1.0)))

    # -- steps, separately timed by the latency benchmark -------------------------------------------
    def preprocess(self, rgbs: list[np.ndarray]) -> torch.Tensor:
        """uint8 HxWx3 images (any sizes) → the model's input batch."""
        out = []
        for rgb in rgbs:
            tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
            out.append(self.module.pre_processor.transform(tensor.unsqueeze(0)))
        return torch.cat(out)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Raw image scores (B,) and anomaly maps (B, H, W) at model resolution."""
        result = self.module.model(batch)
        scores = result.pred_score.reshape(-1).float().numpy()
        maps = result.anomaly_map.reshape(batch.shape[0], *result.anomaly_map.shape[-2:]).float().numpy()
        return scores, maps

    def verdict(self, score: float) -> bool | None:
        return None if self.image_threshold is None else bool(score >= self.image_threshold)

    def predict(self, sources: list, names: list[str] | None = None, batch_size: int = 8) -> list[Prediction]:
        """Score files, bytes or arrays. A bad file gets a Prediction with ``error``; the rest still run."""
        names = names or [str(s) if isinstance(s, (str, Path)) else f"image {i + 1}" for i, s in enumerate(sources)]
        preds: list[Prediction] = []
        for name, source in zip(names, sources):
            try:
                rgb = source if isinstance(source, np.ndarray) else images.read_image(source, name=name)
                preds.append(Prediction(name=name, image=rgb))
            except ImageError as exc:
                preds.append(Prediction(name=name, error=str(exc)))
        ok = [p for p in preds if p.error is None]
        for start in range(0, len(ok), batch_size):
            chunk = ok[start:start + batch_size]
            scores, maps = self.forward(self.preprocess([p.image for p in chunk]))
            for p, s, m in zip(chunk, scores, maps):
                p.score, p.anomaly_map, p.is_anomalous = float(s), m, self.verdict(float(s))
        return preds


def set_threads(n: int | None = None) -> int:
    """Use every core unless told otherwise (torch's default can be lower inside some launchers)."""
    n = n or int(os.environ.get("AW_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
