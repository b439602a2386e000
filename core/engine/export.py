"""Export a run's model to OpenVINO and score images with OpenVINO's runtime.

    from core.engine.export import export_openvino, OpenVinoModel, fastest_model
    export_openvino(run_dir)                    # → run_dir/openvino/{model_fp32,model_fp16}.{xml,bin}, export.json
    model = OpenVinoModel(run_dir, "fp32")      # same interface as core.engine.inference.LoadedModel
    model = fastest_model(run_dir)              # the OpenVINO model if a valid export exists, else LoadedModel

What the exported graph contains, and why:

- **No pre-processing.** anomalib's exporter puts the model's ``pre_processor`` into the graph with
  antialiasing switched *off* in ``Resize`` (``get_exportable_transform``), because ONNX has no antialiased
  resize. Training and the PyTorch path resize *with* antialiasing, so a graph fed the 1024² image would score
  differently. The graph therefore starts after pre-processing: the input is exactly what
  ``LoadedModel.preprocess`` produces, made by the same code (``core.engine.inference.preprocess_images``) from the
  transform recorded in ``export.json``.
- **No post-processing.** The outputs are the raw ``pred_score`` (B,) and ``anomaly_map`` (B, 1, H, W), as
  ``LoadedModel.forward`` returns them; thresholds and heat-map ranges stay the run's own.
- **Any batch size, including 1.** PatchCore's nearest-neighbour search runs in chunks of
  ``DEFAULT_CHUNK_SIZE`` patches (1,024 = one 256² image). The exporter traces with a batch of 2, which takes
  the chunked branch, and the graph came out fixed to batch 2. Raising the constant (the fix noted in
  shared/README) makes torch 2.14's exporter fail on the ``batch <= constant`` guard it creates, so during
  export the model's ``nearest_neighbors`` is the unchunked branch itself (same arithmetic, no branch); the
  export is then checked at batch 1 and 3. The unchunked graph holds a (batch × patches) × memory-bank
  distance matrix (110 MB per 256² image for a 10 % grid coreset), so ``OpenVinoModel`` feeds at most
  ``max_batch`` images per call: by default as many as keep that matrix under 256 MB (1 to 8).
- **f32 arithmetic.** On CPUs with bfloat16 support OpenVINO computes in bf16 by default
  (``INFERENCE_PRECISION_HINT``); scores then move by ~1e-2. Both precisions are compiled with the hint set
  to f32: "fp16" is the *stored* weight precision (half the file; PatchCore's memory bank rounded to fp16).
- **Unpinned threads.** OpenVINO pins its CPU threads by default; on a shared 2-core machine a pinned
  thread waits for whatever else runs on its core, so pinning is switched off (~15 % faster here).

INT8 (NNCF) is not offered: ``nncf`` is not among this project's dependencies.
Each export is validated against the PyTorch model on real inputs before it is kept; ``export.json``
records the checkpoint's sha256 so that a re-trained run's stale export is never used.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from core.engine.inference import LoadedModel, RunModel, preprocess_images
from core.errors import WorkbenchError
from core.models import get_entry
from core.models.weights import sha256_file
from core.store import access
from core.store.artifacts import RunArtifacts, read_json, write_json
from core.store.versions import RunVersions

log = logging.getLogger("workbench.export")

EXPORT_DIR = "openvino"
PRECISIONS = ("fp32", "fp16")
# Largest relative difference of image scores to the PyTorch model that an export may show to be kept.
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}
VALIDATION_BATCHES = (1, 3)
MAX_KNN_MATRIX_BYTES = 256 << 20  # OpenVinoModel's default max_batch keeps PatchCore's distance matrix below this


class ExportError(WorkbenchError):
    pass


# ------------------------------------------------------------------------------------- pre-processing spec


def describe_transform(transform) -> list[dict]:
    """The pre-processor transform as plain data (only the steps we can rebuild exactly)."""
    from torchvision.transforms.v2 import CenterCrop, Compose, Normalize, Resize  # torchvision: ~1.5 s, export only

    steps = list(transform.transforms) if isinstance(transform, Compose) else [transform]
    out = []
    for step in steps:
        if isinstance(step, Resize):
            out.append(
                {
                    "op": "resize",
                    "size": [step.size] if isinstance(step.size, int) else list(step.size),
                    "interpolation": getattr(step.interpolation, "value", step.interpolation),
                    "antialias": bool(step.antialias),
                    "max_size": step.max_size,
                }
            )
        elif isinstance(step, Normalize):
            out.append({"op": "normalize", "mean": [float(v) for v in step.mean], "std": [float(v) for v in step.std]})
        elif isinstance(step, CenterCrop):
            out.append({"op": "center_crop", "size": list(step.size)})
        else:
            raise ExportError(f"Cannot export a model whose pre-processing contains {type(step).__name__}.")
    return out


def build_transform(spec: list[dict]):
    # torchvision: ~1.5 s to import, loaded with the first exported model, not with this module
    from torchvision.transforms.v2 import CenterCrop, Compose, InterpolationMode, Normalize, Resize

    steps = []
    for s in spec:
        if s["op"] == "resize":
            steps.append(
                Resize(
                    s["size"],
                    interpolation=InterpolationMode(s["interpolation"]),
                    antialias=s["antialias"],
                    max_size=s.get("max_size"),
                )
            )
        elif s["op"] == "normalize":
            steps.append(Normalize(mean=s["mean"], std=s["std"]))
        elif s["op"] == "center_crop":
            steps.append(CenterCrop(s["size"]))
        else:
            raise ExportError(f"Unknown pre-processing step {s['op']!r} in export.json.")
    return Compose(steps)


# ------------------------------------------------------------------------------------- export


@contextlib.contextmanager
def _graph_without_processors(module):
    """The Lightning module's forward reduced to its torch model (see the module docstring)."""
    pre, post = module.pre_processor, module.post_processor
    module.pre_processor, module.post_processor = None, None
    try:
        yield
    finally:
        module.pre_processor, module.post_processor = pre, post


@contextlib.contextmanager
def _unchunked_knn(torch_model):
    """PatchCore's nearest-neighbour search without its chunk loop while the graph is traced.

    anomalib's ``nearest_neighbors`` branches on ``n <= DEFAULT_CHUNK_SIZE`` (n = batch × patches): traced at
    batch 2 it takes the chunked branch and the graph is fixed to batch 2 (raising the constant instead makes
    torch.export fail on the resulting ``batch <= c/patches`` guard). For the export the instance gets the
    unchunked branch's exact arithmetic with no branch on n. (A graph tiled over the memory bank, as
    ``core.engine.inference.nearest_patch`` is, was tried: no faster in OpenVINO and twice the file, since the
    bank's slices are stored as separate constants.)"""
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel  # anomalib: only when exporting

    if not isinstance(torch_model, PatchcoreModel):
        yield
        return

    def nearest_neighbors(embedding, n_neighbors):
        distances = torch_model.euclidean_dist(embedding, torch_model.memory_bank)
        if n_neighbors == 1:
            return distances.min(1)
        return distances.topk(k=n_neighbors, largest=False, dim=1)

    torch_model.nearest_neighbors = nearest_neighbors
    try:
        yield
    finally:
        del torch_model.nearest_neighbors


def _validation_inputs(loaded: LoadedModel, n: int) -> list[np.ndarray]:
    """Up to ``n`` of the run's own test images (deterministic random images if none are readable)."""
    records = read_json(RunArtifacts(loaded.run_dir).records_path, [])
    rgbs = []
    for rec in records[:: max(1, len(records) // n)][:n]:  # spread over good and defect images
        with contextlib.suppress(Exception):
            rgbs.append(loaded.read_image(rec["path"]))
    rng = np.random.default_rng(0)
    while len(rgbs) < n:
        rgbs.append(rng.integers(0, 256, (loaded.image_size, loaded.image_size, 3), dtype=np.uint8))
    return rgbs


def compare_scores(a: np.ndarray, b: np.ndarray) -> float:
    """Largest relative difference |a - b| / |b| of two score vectors."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))) if len(b) else 0.0


def export_openvino(run_dir: Path, precisions: tuple[str, ...] = PRECISIONS, n_check: int = 4) -> dict:
    """Export ``run_dir``'s model to OpenVINO IR with anomalib's exporter (``AnomalibModule.to_openvino``),
    validate every precision against the PyTorch model and write ``run_dir/openvino/``. Returns export.json.

    Raises ExportError if OpenVINO is missing, the model cannot be exported, or an export disagrees with
    the PyTorch model beyond ``TOLERANCE``; an earlier valid export is then left as it was."""
    access.check_write("export model", run=Path(run_dir).name, precisions=list(precisions))
    # anomalib/openvino: seconds to import, only when a model is exported
    import anomalib
    import openvino as ov
    from anomalib.deploy import CompressionType

    run_dir = Path(run_dir)
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise ExportError(f"Unknown precision(s) {sorted(unknown)}; choose from {PRECISIONS}.")
    loaded = LoadedModel(run_dir, fast=False)
    entry = get_entry(loaded.model_name)
    if entry.export_note:
        raise ExportError(f"{entry.label} is not exported to OpenVINO: {entry.export_note}")
    module = loaded.module
    size = loaded.image_size
    transform_spec = describe_transform(module.pre_processor.transform)
    final, tmp = run_dir / EXPORT_DIR, run_dir / (EXPORT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    # Reference: the unmodified anomalib model on the run's own test images.
    rgbs = _validation_inputs(loaded, n_check)
    batch = loaded.preprocess(rgbs)
    with torch.inference_mode():
        ref_scores, ref_maps = loaded.forward(batch)

    bank = getattr(module.model, "memory_bank", None)  # PatchCore's; PaDiM's and DFM's are lists emptied by fit
    patches = None
    if isinstance(bank, torch.Tensor) and bank.numel() and hasattr(module.model, "generate_embedding"):
        with torch.inference_mode():  # patches per image: PatchCore's embedding grid for one input
            feats = module.model.feature_extractor(batch[:1])
            patches = int(
                module.model.generate_embedding({k: module.model.feature_pooler(v) for k, v in feats.items()})
                .shape[-2:]
                .numel()
            )
    info = {
        "format": "openvino",
        "openvino": ov.__version__,
        "anomalib": anomalib.__version__,
        "torch": torch.__version__,
        "model": loaded.model_name,
        "image_size": size,
        "checkpoint_sha256": sha256_file(RunArtifacts(run_dir).checkpoint),
        "input": {
            "name": "input",
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "preprocessing_in_graph": False,
            "preprocessing": transform_spec,
        },
        "outputs": ["pred_score", "anomaly_map"],
        "postprocessing_in_graph": False,
        "inference_precision_hint": "f32",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "knn_matrix_bytes_per_image": patches * int(bank.shape[0]) * 4 if patches else None,
        "precisions": {},
    }
    try:
        for precision in precisions:
            t0 = time.perf_counter()
            with _graph_without_processors(module), _unchunked_knn(module.model), torch.no_grad():
                xml = module.to_openvino(
                    tmp / f"export_{precision}",
                    model_file_name="model",
                    input_size=(size, size),
                    compression_type=CompressionType.FP16 if precision == "fp16" else None,
                    # torch 2.14's exporter writes opset 18; anomalib's default 14 only adds a failed (logged)
                    # down-conversion. OpenVINO reads opset 18.
                    onnx_kwargs={"opset_version": 18},
                )
            for suffix in (".xml", ".bin"):
                shutil.move(str(Path(xml).with_suffix(suffix)), tmp / f"model_{precision}{suffix}")
            shutil.rmtree(tmp / f"export_{precision}", ignore_errors=True)
            export_s = time.perf_counter() - t0

            # Validate: the same pre-processed inputs, at batch 1 and at a batch > 2 (the trap's symptom).
            ov_model = OpenVinoModel(
                run_dir,
                precision,
                export_dir=tmp,
                export_info={
                    **info,
                    "precisions": {precision: {"xml": f"model_{precision}.xml", "bin": f"model_{precision}.bin"}},
                },
            )
            got = {}
            for bs in VALIDATION_BATCHES:
                scores, maps = [], []
                for start in range(0, len(rgbs), bs):
                    s, m = ov_model.forward(ov_model.preprocess(rgbs[start : start + bs]))
                    scores.append(s)
                    maps.append(m)
                got[bs] = (np.concatenate(scores), np.concatenate(maps))
            score_diff = max(compare_scores(got[bs][0], ref_scores) for bs in got)
            map_diff = max(float(np.max(np.abs(got[bs][1] - ref_maps)) / float(np.max(np.abs(ref_maps)))) for bs in got)
            entry = {
                "xml": f"model_{precision}.xml",
                "bin": f"model_{precision}.bin",
                "size_mb": (
                    (tmp / f"model_{precision}.xml").stat().st_size + (tmp / f"model_{precision}.bin").stat().st_size
                )
                / 2**20,
                "export_s": export_s,
                "validated_batch_sizes": list(VALIDATION_BATCHES),
                "max_rel_score_diff": score_diff,
                "max_map_diff_rel_to_max": map_diff,
                "tolerance": TOLERANCE[precision],
                "valid": score_diff <= TOLERANCE[precision],
            }
            info["precisions"][precision] = entry
            log.info(
                "OpenVINO %s export: %.1f MB, max relative score difference %.2e",
                precision,
                entry["size_mb"],
                score_diff,
            )
            if not entry["valid"]:
                raise ExportError(
                    f"OpenVINO {precision} export disagrees with the PyTorch model: relative "
                    f"score difference {score_diff:.2e} > {TOLERANCE[precision]:.0e}."
                )
        write_json(tmp / "export.json", info)
        shutil.rmtree(final, ignore_errors=True)
        tmp.replace(final)
    except ExportError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"OpenVINO export failed: {type(exc).__name__}: {exc}") from exc
    return info


def export_info(run_dir: Path) -> dict | None:
    return read_json(Path(run_dir) / EXPORT_DIR / "export.json")


def export_status(run_dir: Path, precision: str = "fp32") -> tuple[bool, str]:
    """(usable, why not) for the run's OpenVINO export of ``precision``."""
    run_dir = Path(run_dir)
    info = export_info(run_dir)
    if info is None:
        return False, "not exported"
    entry = info.get("precisions", {}).get(precision)
    if not entry:
        return False, f"no {precision} export"
    if not entry.get("valid"):
        return False, f"the {precision} export failed validation"
    folder = run_dir / EXPORT_DIR
    if not ((folder / entry["xml"]).is_file() and (folder / entry["bin"]).is_file()):
        return False, "export files are missing"
    ckpt = RunArtifacts(run_dir).checkpoint
    if not ckpt.is_file() or sha256_file(ckpt) != info.get("checkpoint_sha256"):
        return False, "the export is older than the run's checkpoint"
    return True, ""


# ------------------------------------------------------------------------------------- runtime


class OpenVinoModel(RunModel):
    """A run's exported model run by OpenVINO's runtime on the CPU; interface of ``LoadedModel``
    (``preprocess`` → ``forward`` → raw scores and maps; ``predict``; ``verdict``; thresholds)."""

    def __init__(
        self,
        run_dir: Path,
        precision: str = "fp32",
        threads: int | None = None,
        export_dir: Path | None = None,
        export_info: dict | None = None,
        max_batch: int | None = None,
    ) -> None:
        # openvino: only when an exported model is run
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        self._read_run(run_dir)
        folder = Path(export_dir) if export_dir else self.run_dir / EXPORT_DIR
        info = export_info or read_json(folder / "export.json")
        if info is None or precision not in info.get("precisions", {}):
            raise ExportError(f"No OpenVINO {precision} export in {folder}; run export_openvino first.")
        entry = info["precisions"][precision]
        self.precision = precision
        if max_batch is None:  # bound the unchunked kNN distance matrix (see the module docstring)
            per_image = info.get("knn_matrix_bytes_per_image") or 0
            max_batch = min(8, max(1, MAX_KNN_MATRIX_BYTES // per_image)) if per_image else 8
        self.max_batch = max(1, int(max_batch))
        self.threads = threads
        self.path_name = f"openvino_{precision}"
        self.info = info
        self._files = [folder / entry["xml"], folder / entry["bin"]]
        self.transform = build_transform(info["input"]["preprocessing"])
        self.core = ov.Core()
        # No CPU pinning: with another process on one of the cores, a pinned OpenVINO thread waits for it
        # (35 vs 42 ms per grid image here); unpinned threads move to the free core.
        config = {
            hints.inference_precision: ov.Type.f32,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            hints.enable_cpu_pinning: False,
        }
        if threads:
            config[props.inference_num_threads] = int(threads)
        self.compiled = self.core.compile_model(self.core.read_model(self._files[0]), "CPU", config)
        self._request = self.compiled.create_infer_request()
        outputs = {name: out for out in self.compiled.outputs for name in out.get_names()}
        self._score_out = outputs.get("pred_score", self.compiled.outputs[0])
        self._map_out = outputs.get("anomaly_map", self.compiled.outputs[-1])

    def preprocess(self, rgbs: list[np.ndarray]) -> np.ndarray:
        """The same pre-processing as ``LoadedModel.preprocess``, as a float32 (B, 3, H, W) array."""
        return preprocess_images(rgbs, self.transform).numpy()

    def forward(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """Raw image scores (B,) and anomaly maps (B, H, W), in calls of at most ``max_batch`` images."""
        batch = np.ascontiguousarray(batch.numpy() if hasattr(batch, "numpy") else batch, dtype=np.float32)
        scores, maps = [], []
        for start in range(0, batch.shape[0], self.max_batch):
            part = batch[start : start + self.max_batch]
            result = self._request.infer({0: part})
            scores.append(np.array(result[self._score_out], dtype=np.float32).reshape(-1))
            amap = np.array(result[self._map_out], dtype=np.float32)
            maps.append(amap.reshape(part.shape[0], *amap.shape[-2:]))
        return np.concatenate(scores), np.concatenate(maps)

    def model_files(self) -> list[Path]:
        return list(self._files)


def fastest_model(run_dir: Path, precision: str = "fp32"):
    """The run's OpenVINO model if a valid, current export exists (and OpenVINO is installed), else the
    PyTorch ``LoadedModel``. fp32 by default: on CPU both precisions compute in f32 at the same speed, and
    fp32 keeps the scores within 1e-3 of the PyTorch model (fp16 only halves the file)."""
    ok, why = export_status(run_dir, precision)
    if ok and RunVersions(run_dir).current() != 1:  # the export is of the trained model; feedback made a newer one
        ok, why = False, f"the run's current version is v{RunVersions(run_dir).current()}; the export is of v1"
    if ok:
        try:
            return OpenVinoModel(run_dir, precision)
        except Exception as exc:  # a broken or incompatible IR: the PyTorch model still works
            log.warning("OpenVINO model of %s could not be loaded (%s); using PyTorch", run_dir, exc)
    else:
        log.info("OpenVINO model of %s not used: %s", run_dir, why)
    return LoadedModel(Path(run_dir))
