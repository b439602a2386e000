"""Dataset specs and the one layout every dataset is brought into.

Four sources — an MVTec AD category, the engineer's own folders (normal / abnormal / optional masks), an
uploaded zip of either, and the built-in synthetic demo — all end up in MVTec AD's folder layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/{good,<defect type>...}/*.png
    <root>/<category>/ground_truth/<defect type>/<name>_mask.png

so one anomalib datamodule (``MVTecAD``) serves them all and a defect type is always the test sub-folder's
name. Own folders are not copied when they can be linked: files that are already 8-bit PNG are symlinked,
anything else (JPEG, BMP, TIFF, 16-bit, RGBA…) is converted once to 8-bit PNG. Files that cannot be read
are listed, skipped, and never abort the import.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.config import Settings, settings as current_settings
from core.errors import DatasetError, ImageError
from core import images

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
    "tile", "toothbrush", "transistor", "wood", "zipper",
)
DEMO_CATEGORY = "demo"


@dataclass(frozen=True)
class DatasetSpec:
    """What a run trains and tests on. ``root``/``category`` point at an MVTec-layout folder."""

    kind: str  # "mvtec" | "folder" | "demo"
    category: str
    root: str
    max_train_images: int | None = None  # a deterministic subset, for quick checks on real data

    @property
    def label(self) -> str:
        prefix = {"mvtec": "MVTec AD", "folder": "Own images", "demo": "Demo"}.get(self.kind, self.kind)
        suffix = f" (first {self.max_train_images} train images)" if self.max_train_images else ""
        return f"{prefix} / {self.category}{suffix}"

    @property
    def path(self) -> Path:
        return Path(self.root) / self.category

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetSpec":
        return cls(**{k: data.get(k) for k in ("kind", "category", "root", "max_train_images")})


@dataclass(frozen=True)
class Sample:
    """One test image with its ground truth."""

    path: str  # the file as the user knows it (symlinks resolved)
    label: int  # 0 normal, 1 anomalous
    defect_type: str  # "good" for normal images
    mask_path: str | None


# ---- specs ---------------------------------------------------------------------------------------------

def mvtec(category: str, root: Path | str | None = None, cfg: Settings | None = None,
          max_train_images: int | None = None) -> DatasetSpec:
    cfg = cfg or current_settings()
    if category not in MVTEC_CATEGORIES:
        raise DatasetError(f"Unknown MVTec AD category '{category}'. Categories: {', '.join(MVTEC_CATEGORIES)}.")
    return DatasetSpec("mvtec", category, str(Path(root or cfg.mvtec_root).resolve()), max_train_images)


def demo(cfg: Settings | None = None, **generator_kwargs) -> DatasetSpec:
    """The synthetic demo dataset, generated on first use (a few seconds)."""
    from core.demo_data import generate_demo_dataset

    cfg = cfg or current_settings()
    root = cfg.datasets_dir / "demo"
    generate_demo_dataset(root, DEMO_CATEGORY, **generator_kwargs)
    return DatasetSpec("demo", DEMO_CATEGORY, str(root))


def custom(name: str, cfg: Settings | None = None) -> DatasetSpec:
    """A previously imported own-images dataset, by name."""
    cfg = cfg or current_settings()
    root = cfg.datasets_dir / "custom"
    if not (root / name / "train" / "good").is_dir():
        known = ", ".join(list_custom(cfg)) or "none yet"
        raise DatasetError(f"No imported dataset named '{name}' (imported: {known}). Import one first.")
    return DatasetSpec("folder", name, str(root))


def list_custom(cfg: Settings | None = None) -> list[str]:
    root = (cfg or current_settings()).datasets_dir / "custom"
    return sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir()) if root.is_dir() else []


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


# ---- anomalib datamodule -------------------------------------------------------------------------------

def build_datamodule(spec: DatasetSpec, train_batch_size: int = 16, eval_batch_size: int = 16, seed: int = 0):
    """anomalib's MVTecAD datamodule over the spec's folder (validation = test set, as anomalib does)."""
    from anomalib.data import MVTecAD

    limit = spec.max_train_images

    class WorkbenchDataModule(MVTecAD):
        def _setup(self, _stage=None) -> None:
            super()._setup(_stage)
            if limit and len(self.train_data.samples) > limit:
                # Evenly spaced, deterministic subset: keeps the variety of the whole set.
                keep = np.linspace(0, len(self.train_data.samples) - 1, limit).round().astype(int)
                self.train_data.samples = self.train_data.samples.iloc[keep].reset_index(drop=True)

    return WorkbenchDataModule(
        root=spec.root, category=spec.category, train_batch_size=train_batch_size,
        eval_batch_size=eval_batch_size, num_workers=0, seed=seed,
    )


def test_samples(spec: DatasetSpec) -> list[Sample]:
    """The test set in a stable order: good first, then each defect type, files sorted."""
    test_dir = spec.path / "test"
    if not test_dir.is_dir():
        raise DatasetError(f"Dataset '{spec.label}' has no test folder at {test_dir}.")
    gt_dir = spec.path / "ground_truth"
    out: list[Sample] = []
    folders = sorted(p for p in test_dir.iterdir() if p.is_dir())
    folders.sort(key=lambda p: p.name != "good")
    for folder in folders:
        for image in images.list_images(folder):
            label = 0 if folder.name == "good" else 1
            mask = gt_dir / folder.name / f"{image.stem}_mask.png"
            out.append(Sample(str(image.resolve()), label, folder.name, str(mask.resolve()) if mask.exists() else None))
    if not out:
        raise DatasetError(f"Dataset '{spec.label}' has no test images under {test_dir}.")
    return out


def train_images(spec: DatasetSpec) -> list[Path]:
    paths = images.list_images(spec.path / "train" / "good")
    if spec.max_train_images and len(paths) > spec.max_train_images:
        keep = np.linspace(0, len(paths) - 1, spec.max_train_images).round().astype(int)
        paths = [paths[i] for i in keep]
    return paths


# ---- importing own images ------------------------------------------------------------------------------

@dataclass
class ImportReport:
    spec: DatasetSpec
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def summary(self) -> str:
        parts = [f"{k}: {v}" for k, v in self.counts.items()]
        text = f"Imported '{self.spec.category}' ({', '.join(parts)})."
        if self.skipped:
            text += f" Skipped {len(self.skipped)} unreadable file(s), e.g. {self.skipped[0][0]}: {self.skipped[0][1]}"
        return text


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip())
    if not cleaned.strip("_"):
        raise DatasetError("Give the dataset a name made of letters, digits, '-' or '_'.")
    return cleaned[:64]


def _place(source: Path, target: Path, report: ImportReport) -> bool:
    """Link an 8-bit PNG, convert anything else to one. False (and a note) if the file can't be read."""
    try:
        rgb = images.read_image(source)
    except ImageError as exc:
        report.skipped.append((str(source), str(exc)))
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix.lower() == ".png" and _is_plain_png(source):
        os.symlink(source.resolve(), target)
    else:
        target.write_bytes(images.to_png_bytes(rgb))
    return True


def _is_plain_png(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as im:
        return im.mode in {"RGB", "L"}


def _place_mask(source: Path, target: Path, report: ImportReport) -> bool:
    try:
        mask = images.read_mask(source)
    except ImageError as exc:
        report.skipped.append((str(source), str(exc)))
        return False
    import cv2

    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), mask.astype(np.uint8) * 255)
    return True


def _defect_groups(abnormal_dir: Path) -> dict[str, list[Path]]:
    """Sub-folders are defect types; images lying directly in the folder get the folder's own name."""
    groups: dict[str, list[Path]] = {}
    direct = images.list_images(abnormal_dir)
    if direct:
        groups[abnormal_dir.name if abnormal_dir.name != "good" else "defect"] = direct
    for sub in sorted(p for p in abnormal_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = images.list_images(sub, recursive=True)
        if found:
            groups[sub.name if sub.name != "good" else "good_defect"] = found
    return groups


def _find_mask(mask_root: Path, defect: str, image: Path) -> Path | None:
    for folder in (mask_root / defect, mask_root):
        for candidate in images.list_images(folder) if folder.is_dir() else []:
            if candidate.stem in {image.stem, f"{image.stem}_mask", f"{image.stem}_gt"}:
                return candidate
    return None


def import_folder(name: str, normal_dir: Path | str, abnormal_dir: Path | str | None = None,
                  mask_dir: Path | str | None = None, normal_test_dir: Path | str | None = None,
                  test_fraction: float = 0.2, seed: int = 0, cfg: Settings | None = None) -> ImportReport:
    """Bring the engineer's own folders into the common layout (see module docstring).

    Without ``normal_test_dir`` a deterministic ``test_fraction`` of the normal images is held out as
    normal test images. Masks pair with abnormal images by file name (``x.png`` ↔ ``x.png``/``x_mask.png``).
    """
    cfg = cfg or current_settings()
    name = _safe_name(name)
    normal_dir = Path(normal_dir).expanduser()
    if not normal_dir.is_dir():
        raise DatasetError(f"Normal-images folder {normal_dir} does not exist.")
    normals = images.list_images(normal_dir, recursive=True)
    if not normals:
        raise DatasetError(f"No images found in {normal_dir} (looked for {', '.join(images.IMAGE_SUFFIXES)}).")
    groups = {}
    if abnormal_dir:
        abnormal_dir = Path(abnormal_dir).expanduser()
        if not abnormal_dir.is_dir():
            raise DatasetError(f"Abnormal-images folder {abnormal_dir} does not exist.")
        groups = _defect_groups(abnormal_dir)
        if not groups:
            raise DatasetError(f"No images found in {abnormal_dir}.")
    masks: dict[Path, Path] = {}
    if mask_dir:
        mask_dir = Path(mask_dir).expanduser()
        if not mask_dir.is_dir():
            raise DatasetError(f"Mask folder {mask_dir} does not exist.")
        unpaired = []
        for defect, paths in groups.items():
            for p in paths:
                m = _find_mask(mask_dir, defect, p)
                if m is None:
                    unpaired.append(p.name)
                else:
                    masks[p] = m
        if unpaired:
            raise DatasetError(
                f"{len(unpaired)} abnormal image(s) have no mask in {mask_dir} (e.g. {', '.join(unpaired[:5])}). "
                "Masks pair by file name (scratch_01.png ↔ scratch_01.png or scratch_01_mask.png); give every "
                "abnormal image a mask, or import without masks."
            )
    if normal_test_dir:
        test_normals = images.list_images(Path(normal_test_dir).expanduser(), recursive=True)
        train_normals = normals
    else:
        shuffled = normals[:]
        random.Random(seed).shuffle(shuffled)
        n_test = int(round(len(shuffled) * test_fraction)) if groups else 0
        test_normals, train_normals = sorted(shuffled[:n_test]), sorted(shuffled[n_test:])

    root = cfg.datasets_dir / "custom"
    final = root / name
    staging = root / f".{name}.importing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    report = ImportReport(DatasetSpec("folder", name, str(root)))
    counts = {"train normal": 0, "test normal": 0}

    def put(paths: list[Path], folder: Path, key: str, mask_folder: Path | None = None) -> None:
        for i, p in enumerate(paths):
            target = folder / f"{i:04d}.png"
            if _place(p, target, report):
                counts[key] = counts.get(key, 0) + 1
                if mask_folder is not None and p in masks:
                    _place_mask(masks[p], mask_folder / f"{i:04d}_mask.png", report)

    put(train_normals, staging / "train" / "good", "train normal")
    put(test_normals, staging / "test" / "good", "test normal")
    for defect, paths in groups.items():
        gt = staging / "ground_truth" / defect if masks else None
        put(paths, staging / "test" / defect, f"test {defect}", gt)
    if counts["train normal"] == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"None of the normal images in {normal_dir} could be read; nothing was imported.")
    (staging / "source.json").write_text(json.dumps({
        "normal_dir": str(normal_dir), "abnormal_dir": str(abnormal_dir or ""), "mask_dir": str(mask_dir or ""),
        "skipped": report.skipped, "counts": counts,
    }, indent=2))
    # Replace an earlier import of the same name only once the new one is complete.
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    report.counts = counts
    return report


MAX_ZIP_BYTES = 4 << 30


def import_zip(name: str, zip_path: Path | str, cfg: Settings | None = None) -> ImportReport:
    """Import a zip holding either MVTec's layout (train/good, test/…, ground_truth/…) or folders named
    normal/ (or good/), abnormal/ (or defect/, anomalous/) and optionally masks/ (or ground_truth/)."""
    cfg = cfg or current_settings()
    name = _safe_name(name)
    raw = cfg.datasets_dir / "uploads" / name
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{Path(zip_path).name} is not a readable zip file ({exc}).") from None
    with archive:
        total = sum(i.file_size for i in archive.infolist())
        if total > MAX_ZIP_BYTES:
            raise DatasetError(f"The zip unpacks to {total / 2**30:.1f} GB; the limit is {MAX_ZIP_BYTES / 2**30:.0f} GB.")
        shutil.rmtree(raw, ignore_errors=True)
        raw.mkdir(parents=True)
        for info in archive.infolist():
            target = (raw / info.filename).resolve()
            if not str(target).startswith(str(raw.resolve())):  # no writing outside the folder ("zip slip")
                raise DatasetError(f"The zip contains an unsafe path: {info.filename}")
            if "__MACOSX" in info.filename:
                continue
            archive.extract(info, raw)
    base = raw
    entries = [p for p in raw.iterdir() if not p.name.startswith((".", "__"))]
    if len(entries) == 1 and entries[0].is_dir():
        base = entries[0]  # zips usually hold one top folder

    def first(*names: str) -> Path | None:
        for n in names:
            if (base / n).is_dir():
                return base / n
        return None

    if (base / "train" / "good").is_dir():
        test = base / "test"
        abnormal = test if test.is_dir() else None
        report = import_folder(name, base / "train" / "good", None, None, cfg=cfg) if abnormal is None else None
        if report is None:
            # MVTec layout: test/good are the normal test images, test/<defect> the defects.
            staging_abnormal = [p for p in test.iterdir() if p.is_dir() and p.name != "good"]
            tmp = raw.parent / f".{name}-abnormal"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for d in staging_abnormal:
                os.symlink(d.resolve(), tmp / d.name)
            report = import_folder(
                name, base / "train" / "good", tmp, first("ground_truth"),
                normal_test_dir=test / "good" if (test / "good").is_dir() else None, cfg=cfg,
            )
        return report
    normal = first("normal", "good", "ok", "OK")
    if normal is None:
        raise DatasetError(
            "The zip must hold MVTec's layout (train/good, test/…, ground_truth/…) or a folder named 'normal' "
            "(with optional 'abnormal' and 'masks' folders)."
        )
    return import_folder(name, normal, first("abnormal", "defect", "defects", "anomalous", "ng", "NG"),
                         first("masks", "mask", "ground_truth"), cfg=cfg)
