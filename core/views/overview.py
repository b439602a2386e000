"""What the Home and Training pages summarise: what this machine has, and the runs as one table.

Pages render these; nothing here imports Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from core import models
from core.config import Settings
from core.config import settings as current_settings
from core.data import datasets
from core.errors import WorkbenchError
from core.models import weights
from core.store.runs import Run


@dataclass(frozen=True)
class MachineOverview:
    offline: bool
    artifacts: Path
    mvtec_root: Path
    mvtec_categories: list[str]  # categories whose train/good folder exists under mvtec_root
    custom_datasets: list[str]  # own datasets imported so far
    weights: list[dict]  # models.weights_overview() rows
    backbones: list[str]  # PatchCore backbones usable right now


def machine_overview(cfg: Settings | None = None) -> MachineOverview:
    cfg = cfg or current_settings()
    return MachineOverview(
        offline=cfg.offline,
        artifacts=cfg.artifacts,
        mvtec_root=cfg.mvtec_root,
        mvtec_categories=datasets.available_mvtec_categories(cfg),
        custom_datasets=datasets.list_custom(cfg),
        weights=models.weights_overview(cfg),
        backbones=weights.available_backbones(cfg),
    )


# ---- the runs table --------------------------------------------------------------------------------------

SOURCE_LABELS = {"mvtec": "MVTec AD", "folder": "Own images", "demo": "Demo"}
RUN_COLUMNS = [
    "id",
    "status",
    "model",
    "dataset",
    "category",
    "image AUROC",
    "pixel AUROC",
    "image F1",
    "AUPRO",
    "fit s",
    "img/s",
    "created",
    "note",
]


def model_label(name: str) -> str:
    try:
        return models.get_entry(name).label
    except WorkbenchError:  # a run of a model this build no longer registers
        return name


def run_note(run: Run) -> str:
    """A short flag for runs whose numbers must not be read as real results (random backbone/teacher)."""
    try:
        return "pipeline check only" if models.model_warnings(run.model, run.params) else ""
    except WorkbenchError:
        return ""


def run_row(run: Run) -> dict:
    m, t, lat = run.metrics, run.timings, run.latency
    source = SOURCE_LABELS.get(run.dataset.get("kind"), run.dataset.get("kind", "?"))
    if run.dataset.get("max_train_images"):
        source += f" (first {run.dataset['max_train_images']} train images)"
    return {
        "id": run.id,
        "status": run.status,
        "model": model_label(run.model),
        "dataset": source,
        "category": run.category,
        "image AUROC": m.get("image_auroc"),
        "pixel AUROC": m.get("pixel_auroc"),
        "image F1": m.get("image_f1"),
        "AUPRO": m.get("aupro"),
        "fit s": t.get("fit_s"),
        "img/s": lat.get("images_per_s_b1"),
        "created": datetime.fromtimestamp(run.created_at),
        "note": run_note(run),
    }


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run, newest first as given; metric columns are float (NaN where not measured)."""
    frame = pd.DataFrame([run_row(r) for r in runs], columns=RUN_COLUMNS)
    numeric = ["image AUROC", "pixel AUROC", "image F1", "AUPRO", "fit s", "img/s"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return frame
