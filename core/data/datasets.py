"""Dataset specs, the one layout every dataset is brought into, and the anomalib datamodule over it.

Four sources — an MVTec AD category, the engineer's own folders (normal / abnormal / optional masks), an
uploaded zip of either, and the built-in synthetic demo — all end up in MVTec AD's folder layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/{good,<defect type>...}/*.png
    <root>/<category>/ground_truth/<defect type>/<name>_mask.png   (optional, per image)

so a defect type is always the test sub-folder's name. Importing own images is ``core.data.importing``.

The datamodule is anomalib's ``MVTecAD`` (it downloads a missing MVTec category when online), but its
samples come from ``train_images``/``test_samples`` below rather than from anomalib's folder parser: that
parser drops files that resolve outside the dataset folder (the links an import makes to the user's own
files) and requires a mask for every abnormal image, so a set without masks failed with a pandas error.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from core.config import Settings
from core.config import settings as current_settings
from core.data import images
from core.data.demo_data import generate_demo_dataset
from core.data.exclusions import excluded_names
from core.errors import DatasetError

MVTEC_CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
# Each category's image side in pixels (square photos; Bergmann et al., IJCV 2021, table 1): what a run's image size
# can follow before a category is downloaded.
MVTEC_IMAGE_SIDE = {
    "bottle": 900,
    "cable": 1024,
    "capsule": 1000,
    "carpet": 1024,
    "grid": 1024,
    "hazelnut": 1024,
    "leather": 1024,
    "metal_nut": 700,
    "pill": 800,
    "screw": 1024,
    "tile": 840,
    "toothbrush": 1024,
    "transistor": 1024,
    "wood": 1024,
    "zipper": 1024,
}
DEMO_CATEGORY = "demo"


@dataclass(frozen=True)
class DatasetSpec:
    """What a run trains and tests on. ``root``/``category`` point at an MVTec-layout folder."""

    kind: str  # "mvtec" | "folder" | "demo"
    category: str
    root: str
    max_train_images: int | None = None  # a deterministic subset, for quick checks on real data
    # Training images left out after an audit (names in train/good; core.data.exclusions). Part of the spec, so a
    # run records exactly which images it was trained without, and a re-run repeats that.
    excluded: tuple[str, ...] = ()
    # Feedback (core.engine.feedback, core.jobs.feedback): images a user marked normal join the training set
    # (absolute paths) and leave the test set, so a retrained run is not evaluated on what it was taught.
    extra_train: tuple[str, ...] = ()
    exclude_test: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        prefix = {"mvtec": "MVTec AD", "folder": "Own images", "demo": "Demo"}.get(self.kind, self.kind)
        suffix = f" (first {self.max_train_images} train images)" if self.max_train_images else ""
        suffix += f" ({len(self.excluded)} train images excluded)" if self.excluded else ""
        suffix += f" (+{len(self.extra_train)} feedback normals)" if self.extra_train else ""
        return f"{prefix} / {self.category}{suffix}"

    @property
    def path(self) -> Path:
        return Path(self.root) / self.category

    def to_dict(self) -> dict:
        out = asdict(self)
        excluded = out.pop("excluded")
        if excluded:  # absent when none: specs without exclusions are stored as before
            out["excluded"] = list(excluded)
        for key in ("extra_train", "exclude_test"):  # likewise absent when empty
            values = out.pop(key)
            if values:
                out[key] = list(values)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> DatasetSpec:
        fields = {k: data.get(k) for k in ("kind", "category", "root", "max_train_images")}
        feedback = {k: tuple(data.get(k) or ()) for k in ("extra_train", "exclude_test")}
        return cls(**fields, excluded=tuple(data.get("excluded") or ()), **feedback)

    def with_recorded_exclusions(self, cfg: Settings | None = None) -> DatasetSpec:
        """This spec with the exclusions recorded for its dataset now (``core.data.exclusions``)."""
        return replace(self, excluded=excluded_names(self, cfg))


@dataclass(frozen=True)
class Sample:
    """One test image with its ground truth."""

    path: str  # a readable file (symlinks resolved)
    label: int  # 0 normal, 1 anomalous
    defect_type: str  # "good" for normal images
    mask_path: str | None
    source: str | None = None  # the user's original file, for imported own images (may since have moved)


# ---- specs ---------------------------------------------------------------------------------------------


def mvtec(
    category: str, root: Path | str | None = None, cfg: Settings | None = None, max_train_images: int | None = None
) -> DatasetSpec:
    cfg = cfg or current_settings()
    if category not in MVTEC_CATEGORIES:
        raise DatasetError(f"Unknown MVTec AD category '{category}'. Categories: {', '.join(MVTEC_CATEGORIES)}.")
    spec = DatasetSpec("mvtec", category, str(Path(root or cfg.mvtec_root).resolve()), max_train_images)
    return spec.with_recorded_exclusions(cfg)


def demo(cfg: Settings | None = None, **generator_kwargs) -> DatasetSpec:
    """The synthetic demo dataset, generated on first use (a few seconds)."""
    cfg = cfg or current_settings()
    root = cfg.datasets_dir / "demo"
    existing = root / DEMO_CATEGORY
    # Asked for "the demo" without settings: the one on disk, whatever its size, so the runs trained on it keep
    # their data (regenerating it with default settings would change their training set under them).
    if generator_kwargs or not ((existing / "demo.json").is_file() and (existing / "train" / "good").is_dir()):
        generate_demo_dataset(root, DEMO_CATEGORY, **generator_kwargs)
    return DatasetSpec("demo", DEMO_CATEGORY, str(root)).with_recorded_exclusions(cfg)


def custom_root(cfg: Settings | None = None) -> Path:
    """Where imported own-images datasets live (one folder each)."""
    return (cfg or current_settings()).datasets_dir / "custom"


def custom(name: str, cfg: Settings | None = None) -> DatasetSpec:
    """A previously imported own-images dataset, by name."""
    root = custom_root(cfg)
    if not name or not (root / name / "train" / "good").is_dir():
        known = ", ".join(list_custom(cfg)) or "none yet"
        raise DatasetError(
            f"No imported dataset named '{name}' (imported: {known}). Import one first: "
            "`aw data import NAME --normal DIR` or the Training page."
        )
    return DatasetSpec("folder", name, str(root)).with_recorded_exclusions(cfg)


def list_custom(cfg: Settings | None = None) -> list[str]:
    root = custom_root(cfg)
    return (
        sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and (p / "train" / "good").is_dir())
        if root.is_dir()
        else []
    )


def import_info(spec: DatasetSpec) -> dict:
    """What the import recorded (counts, notes, where the files came from); {} for other datasets."""
    path = spec.path / "source.json"
    try:
        return json.loads(path.read_text()) if spec.kind == "folder" and path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _sources(spec: DatasetSpec) -> dict[str, str]:
    path = spec.path / "files.json"
    try:
        return json.loads(path.read_text()) if spec.kind == "folder" and path.is_file() else {}
    except (OSError, ValueError):
        return {}


def available_mvtec_categories(cfg: Settings | None = None) -> list[str]:
    root = (cfg or current_settings()).mvtec_root
    return [c for c in MVTEC_CATEGORIES if (root / c / "train" / "good").is_dir()]


def check_available(spec: DatasetSpec, cfg: Settings | None = None) -> None:
    """Raise DatasetError when a dataset can't be used now (before a run is queued, not after)."""
    cfg = cfg or current_settings()
    if spec.kind == "mvtec" and not (spec.path / "train" / "good").is_dir():
        if cfg.offline:
            raise DatasetError(
                f"MVTec AD category '{spec.category}' was not found at {spec.path} and this machine is offline. "
                f"Unpack the official MVTec AD archive so that {spec.path / 'train' / 'good'} exists, or point "
                "AW_MVTEC_ROOT at the folder that holds the categories."
            )
        return  # online: anomalib downloads MVTec AD into the root on first use
    if spec.kind != "mvtec":
        train = spec.path / "train" / "good"
        if not train.is_dir() or not images.list_images(train):
            raise DatasetError(f"Dataset '{spec.label}' has no training images at {train}.")
    # Symlinked files (own images on another file system) break when the originals move.
    broken = [p for p in spec.path.rglob("*.png") if p.is_symlink() and not p.exists()] if spec.path.is_dir() else []
    if broken:
        raise DatasetError(
            f"{len(broken)} image(s) of dataset '{spec.label}' are links to files that no longer exist "
            f"(e.g. {broken[0].name} -> {os.readlink(broken[0])}). Put the originals back, or import the dataset "
            "again under a new name."
        )


# ---- anomalib datamodule -------------------------------------------------------------------------------


def _anomalib_dataset(rows: list[dict], split: str, category: str):
    """An anomalib image dataset over explicit (path, label, mask) rows."""
    # pandas/anomalib: only when a datamodule is set up, not at page start-up (pages make specs)
    import pandas as pd
    from anomalib.data.datasets.base.image import AnomalibDataset

    frame = pd.DataFrame(rows, columns=["image_path", "label", "label_index", "mask_path", "split"])
    frame["split"] = split
    frame["mask_path"] = frame["mask_path"].fillna("").astype(str)  # anomalib's "no mask" is "" (None turns NaN)
    abnormal = frame[frame.label_index == 1]
    # Segmentation only when every abnormal image has a mask (anomalib reads one for each); else image labels.
    segmentation = len(abnormal) > 0 and bool((abnormal.mask_path != "").all())
    frame.attrs["task"] = "segmentation" if segmentation else "classification"
    dataset = AnomalibDataset()
    dataset.samples = frame
    dataset.category = category
    return dataset


def build_datamodule(spec: DatasetSpec, train_batch_size: int = 16, eval_batch_size: int = 16, seed: int = 0):
    """anomalib's MVTecAD datamodule over the spec's samples (validation = test set, as anomalib does)."""
    from anomalib.data import MVTecAD  # anomalib: seconds to import, not at page start-up

    class WorkbenchDataModule(MVTecAD):
        def _setup(self, _stage=None) -> None:
            train = [
                {"image_path": str(p), "label": "good", "label_index": 0, "mask_path": None} for p in train_images(spec)
            ]
            test = [
                {"image_path": s.path, "label": s.defect_type, "label_index": s.label, "mask_path": s.mask_path}
                for s in test_samples(spec)
            ]
            self.train_data = _anomalib_dataset(train, "train", spec.category)
            self.test_data = _anomalib_dataset(test, "test", spec.category)

    return WorkbenchDataModule(
        root=spec.root,
        category=spec.category,
        train_batch_size=train_batch_size,
        eval_batch_size=eval_batch_size,
        num_workers=0,
        seed=seed,
    )


def test_samples(spec: DatasetSpec) -> list[Sample]:
    """The test set in a stable order: good first, then each defect type, files sorted."""
    test_dir = spec.path / "test"
    if not test_dir.is_dir():
        raise DatasetError(f"Dataset '{spec.label}' has no test folder at {test_dir}.")
    gt_dir = spec.path / "ground_truth"
    sources = _sources(spec)
    out: list[Sample] = []
    folders = sorted(p for p in test_dir.iterdir() if p.is_dir())
    folders.sort(key=lambda p: p.name != "good")
    for folder in folders:
        for image in images.list_images(folder):
            label = 0 if folder.name == "good" else 1
            mask = gt_dir / folder.name / f"{image.stem}_mask.png"
            out.append(
                Sample(
                    str(image.resolve()),
                    label,
                    folder.name,
                    str(mask.resolve()) if mask.exists() else None,
                    sources.get(f"test/{folder.name}/{image.name}"),
                )
            )
    if spec.exclude_test:  # feedback images now in the training set are not evaluated on
        left_out = {str(Path(p).resolve()) for p in spec.exclude_test}
        out = [s for s in out if s.path not in left_out]
    if not out:
        raise DatasetError(f"Dataset '{spec.label}' has no test images under {test_dir}.")
    return out


def train_images(spec: DatasetSpec) -> list[Path]:
    """The training images, without the spec's excluded ones, then the evenly spaced subset if one is asked for."""
    paths = images.list_images(spec.path / "train" / "good")
    if spec.excluded:
        excluded = set(spec.excluded)
        paths = [p for p in paths if p.name not in excluded]
    if spec.max_train_images and len(paths) > spec.max_train_images:
        keep = np.linspace(0, len(paths) - 1, spec.max_train_images).round().astype(int)
        paths = [paths[i] for i in keep]
    return paths + [Path(p) for p in spec.extra_train]  # feedback normals come on top of any subset
