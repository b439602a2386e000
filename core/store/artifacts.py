"""What a finished run leaves in ``artifacts/runs/<id>/`` and how to read it back.

| file | content |
|---|---|
| model.safetensors, model.json | trained weights (safetensors: loading runs no code), how to rebuild the model |
| records.json | one row per test image: path, label, defect type, raw score, predicted label |
| maps.npz | anomaly maps at model resolution (float16) and ground-truth masks at the same size |
| metrics.json, curves.json, latency.json | evaluation, ROC/PR points, timing figures |
| log.txt, loss.jsonl | the run's log and (EfficientAD) its training-loss curve |
| vectors.npz | each test (and, for PatchCore, training) image's two similarity vectors, pooled during the run |
| limit.json | the detection limit: recall of synthetic defects by shape, size and contrast (``aw limit``) |

Per-image records are written once when a run is tested; every threshold-dependent view is recomputed
from them, so moving a slider never reruns a model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import RunError

RECORD_COLUMNS = ["index", "path", "label", "defect_type", "mask_path", "score", "pred_label", "source"]


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    tmp.replace(path)  # atomic: a reader never sees half a file


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


@dataclass
class RunArtifacts:
    run_dir: Path

    checkpoint = property(lambda self: self.run_dir / "model.safetensors")
    model_json = property(lambda self: self.run_dir / "model.json")
    records_path = property(lambda self: self.run_dir / "records.json")
    maps_path = property(lambda self: self.run_dir / "maps.npz")
    metrics_path = property(lambda self: self.run_dir / "metrics.json")
    curves_path = property(lambda self: self.run_dir / "curves.json")
    latency_path = property(lambda self: self.run_dir / "latency.json")
    log_path = property(lambda self: self.run_dir / "log.txt")
    loss_path = property(lambda self: self.run_dir / "loss.jsonl")
    limit_path = property(lambda self: self.run_dir / "limit.json")  # core.engine.limit: smallest defect caught
    # The similarity vectors pooled where the features already were (test pass, PatchCore's fit): indexing reads
    # them instead of running the model over every image again (core.similarity.embeddings.index_run).
    vectors_path = property(lambda self: self.run_dir / "vectors.npz")

    @property
    def has_records(self) -> bool:
        return self.records_path.is_file() and self.maps_path.is_file()

    def save_records(self, records: list[dict], maps: np.ndarray, masks: np.ndarray) -> None:
        write_json(self.records_path, records)
        tmp = self.run_dir / "maps.tmp.npz"
        np.savez_compressed(tmp, maps=maps.astype(np.float16), masks=masks.astype(bool))
        tmp.replace(self.maps_path)

    def save_vectors(self, split: str, paths: list[str], vectors: dict[str, np.ndarray], scores: np.ndarray) -> None:
        """Store one split's ("test" or "train") image vectors beside any other split's already stored."""
        data = self.vectors()
        data.update(
            {
                f"{split}_paths": np.array(paths, dtype=np.str_),
                f"{split}_score": np.asarray(scores, dtype=np.float64),
                **{f"{split}_{name}": np.asarray(v, dtype=np.float32) for name, v in vectors.items()},
            }
        )
        tmp = self.run_dir / "vectors.tmp.npz"
        np.savez(tmp, **data)
        tmp.replace(self.vectors_path)

    def vectors(self) -> dict[str, np.ndarray]:
        """What ``save_vectors`` stored ({} for a run from before it, or one whose file is unreadable)."""
        try:
            with np.load(self.vectors_path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):
            return {}

    @cached_property
    def records(self) -> pd.DataFrame:
        if not self.records_path.is_file():
            raise RunError(f"Run folder {self.run_dir} has no test records (the run did not finish testing).")
        return pd.DataFrame(read_json(self.records_path), columns=RECORD_COLUMNS)

    @cached_property
    def _maps_file(self) -> dict[str, np.ndarray]:
        if not self.maps_path.is_file():
            raise RunError(f"Run folder {self.run_dir} has no anomaly maps.")
        with np.load(self.maps_path) as data:
            return {"maps": data["maps"], "masks": data["masks"]}

    @property
    def maps(self) -> np.ndarray:
        return self._maps_file["maps"]

    @property
    def masks(self) -> np.ndarray:
        return self._maps_file["masks"]

    def metrics(self) -> dict:
        return read_json(self.metrics_path, {})

    def curves(self) -> dict:
        return read_json(self.curves_path, {})

    def latency(self) -> dict:
        return read_json(self.latency_path, {})

    def limit(self) -> dict:
        """The run's measured detection limit (``core.engine.limit``); {} until one was measured."""
        return read_json(self.limit_path, {})

    def loss_curve(self) -> list[dict]:
        if not self.loss_path.is_file():
            return []
        return [json.loads(line) for line in self.loss_path.read_text().splitlines() if line.strip()]

    def log_tail(self, n: int = 40) -> list[str]:
        """The log's last ``n`` lines, as any screen can draw them (libraries log emoji, e.g. Lightning's tips)."""
        if not self.log_path.is_file():
            return []
        return [plain_text(line) for line in self.log_path.read_text(errors="replace").splitlines()[-n:]]


# Pictographs, dingbats and the emoji variation selector: drawn as empty boxes where no emoji font is installed
# (plant PCs, kiosks); U+FFFD marks undecodable bytes.
_NO_FONT = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u231a-\u23ff\ufe0f\ufffd]")


def plain_text(text: str) -> str:
    """``text`` without characters that need an emoji font (dropped, with the space after them)."""
    return _NO_FONT.sub("", text).replace("  ", " ")


# ---- memory-bank provenance -------------------------------------------------------------------------------

PROVENANCE_FILE = "bank_provenance.npz"


@dataclass
class BankProvenance:
    """Where each memory-bank entry of a PatchCore model came from: ``entries`` is (bank size, 3) int32 rows of
    (index into ``train_paths``, patch row, patch col) on the model's ``grid`` (h, w) of patches. 12 bytes per
    entry, next to the entry's own features (152 float32 = 608 bytes on EfficientNet-Lite0)."""

    entries: np.ndarray
    train_paths: list[str]
    grid: tuple[int, int]

    def __len__(self) -> int:
        return int(self.entries.shape[0])

    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / PROVENANCE_FILE
        tmp = path.with_name("bank_provenance.tmp.npz")
        np.savez(
            tmp,
            entries=np.ascontiguousarray(self.entries, dtype=np.int32),
            train_paths=np.array(self.train_paths, dtype=np.str_),
            grid=np.array(self.grid, dtype=np.int32),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, model_dir: Path) -> BankProvenance | None:
        """The provenance saved in ``model_dir``; None for runs trained before it was kept (or non-bank models)."""
        path = Path(model_dir) / PROVENANCE_FILE
        if not path.is_file():
            return None
        with np.load(path) as data:
            grid = tuple(int(v) for v in data["grid"])
            return cls(data["entries"].astype(np.int32), [str(p) for p in data["train_paths"]], grid)

    def extended(self, image_path: str, rows: np.ndarray, cols: np.ndarray) -> BankProvenance:
        """A copy with entries of one more image appended (a feedback image added to the bank)."""
        paths = list(self.train_paths)
        if image_path in paths:
            idx = paths.index(image_path)
        else:
            idx = len(paths)
            paths.append(image_path)
        new = np.stack([np.full(len(rows), idx), rows, cols], axis=1).astype(np.int32)
        return BankProvenance(np.concatenate([self.entries, new]), paths, self.grid)
