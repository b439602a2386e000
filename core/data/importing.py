"""Bringing the engineer's own images into the one dataset layout (see ``core.data.datasets``).

Two ways in, one importer behind them:

* folders: a folder of normal images, optionally a folder of abnormal images (sub-folders = defect types)
  and a folder of masks paired by file name (``x.png`` ↔ ``x.png`` / ``x_mask.png`` / ``x_gt.png``);
* a zip holding either MVTec AD's layout (``train/good``, ``test/<type>``, ``ground_truth/<type>``) or the
  folders above (``normal/``, ``abnormal/``, ``masks/``), with or without one top folder.

What it promises:

* The user's files are never moved or changed. Plain 8-bit PNGs are hard-linked where the file system
  allows it (no extra disk, and the import survives moving or deleting the originals), else symlinked;
  everything else (JPEG, BMP, TIFF, WebP, 16-bit, RGBA, palette PNG…) is converted once to an 8-bit PNG.
  Files keep their names, so a heatmap says ``scratch_017.png``, not ``0003.png``.
* Every file is decoded once. Unreadable files are listed and skipped; they never abort the import.
  Mixed sizes and channel counts are reported (training resizes every image, greyscale becomes RGB).
* Abnormal images without a mask are kept (pixel metrics then use the images that have one) and named in
  the report; masks that pair with no image are named too. Masks pairing with nothing at all is an error
  that explains the naming rule, because it almost always means a naming convention was not followed.
* An import is built in a hidden staging folder and renamed into place only when complete: a failed or
  interrupted import leaves any earlier dataset untouched, and an import killed mid-way (``kill -9``) leaves no
  dataset under its name: the next import sweeps its hidden folders away (``sweep_stale``). A dataset that
  finished runs were trained on is never replaced (their stored records point at its files).
* A zip is checked before anything is written: unsafe member names ("zip slip"), symlink members, more
  than ``MAX_ZIP_FILES`` members, more than ``MAX_ZIP_BYTES`` unpacked, a suspicious compression ratio
  (zip bomb) or too little free disk space refuse the whole zip with a message.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import stat
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.config import Settings
from core.config import settings as current_settings
from core.data import images
from core.data.datasets import DatasetSpec, custom_root
from core.errors import DatasetError, ImageError
from core.store import access
from core.store.runs import RunRegistry, process_alive

ProgressFn = Callable[[int, int], None]

MAX_ZIP_BYTES = 8 << 30  # unpacked; an inspection set of thousands of 1-megapixel PNGs is ~1-4 GB
MAX_ZIP_FILES = 200_000
# Images barely compress (PNG/JPEG ~1x, raw BMP/TIFF of textures rarely beyond 20x); zip bombs reach 1000x.
MAX_ZIP_RATIO = 200
DISK_MARGIN_BYTES = 512 << 20
MASK_SUFFIXES = ("_mask", "_gt", "-mask", "_label")

NORMAL_NAMES = ("normal", "good", "ok", "OK", "Normal", "Good")
ABNORMAL_NAMES = ("abnormal", "defect", "defects", "anomalous", "ng", "NG", "bad", "Abnormal", "Defect")
MASK_NAMES = ("masks", "mask", "ground_truth", "Masks", "gt")


@dataclass
class ImportReport:
    """What an import did, in words a user can act on."""

    spec: DatasetSpec
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_abnormal(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith("test ") and k != "test normal")

    def summary(self) -> str:
        parts = [f"{k}: {v}" for k, v in self.counts.items()]
        text = f"Imported '{self.spec.category}' ({', '.join(parts)}) in {self.seconds:.1f} s."
        if self.skipped:
            first, reason = self.skipped[0]
            text += f" Skipped {len(self.skipped)} unreadable file(s), e.g. {Path(first).name}: {reason}"
        return text

    def lines(self) -> list[str]:
        """The summary, then every note (for the CLI and the page)."""
        return [self.summary(), *self.notes]


# ---- names and pairing --------------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in (name or "").strip())
    if not cleaned.strip("_"):
        raise DatasetError("Give the dataset a name made of letters, digits, '-' or '_'.")
    return cleaned[:64]


def _defect_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip()) or "defect"
    return "good_defect" if cleaned == "good" else cleaned  # 'good' means normal in the layout


def _mask_stem(path: Path) -> str:
    stem = path.stem
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


@dataclass(frozen=True)
class AbnormalImage:
    path: Path
    defect: str
    rel_parent: PurePosixPath  # folder below the abnormal root (for pairing with a mask tree of the same shape)


def defect_groups(abnormal_dir: Path) -> list[AbnormalImage]:
    """Sub-folders are defect types (searched recursively); images directly in the folder get its name."""
    found: list[AbnormalImage] = []
    for p in images.list_images(abnormal_dir):
        found.append(
            AbnormalImage(
                p, _defect_name(abnormal_dir.name if abnormal_dir.name != "good" else "defect"), PurePosixPath(".")
            )
        )
    for sub in sorted(p for p in abnormal_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
        for p in images.list_images(sub, recursive=True):
            found.append(
                AbnormalImage(p, _defect_name(sub.name), PurePosixPath(p.parent.relative_to(abnormal_dir).as_posix()))
            )
    return found


class MaskIndex:
    """Masks under a folder, paired with abnormal images by file name (``x.png`` ↔ ``x.png``, ``x_mask.png``, …).

    The rule (README, "Own images"): when the masks folder has sub-folders, they are defect types and an image's
    mask must come from its own type (the same relative folder as the image, or a folder named like its type);
    pairing across types happens only for a flat masks folder. A name that matches in several places, or a flat
    mask that several images of different types would share, pairs with nothing and is reported, never guessed.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_stem: dict[str, list[Path]] = {}
        for p in images.list_images(root, recursive=True):
            self.by_stem.setdefault(_mask_stem(p), []).append(p)
        self.typed = any(p.parent != root for paths in self.by_stem.values() for p in paths)
        self.used: dict[Path, AbnormalImage] = {}
        self.ambiguous: list[str] = []  # one line per image whose mask could not be told apart

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_stem.values())

    def _folders(self, mask: Path) -> tuple[PurePosixPath, set[str]]:
        rel = PurePosixPath(mask.parent.relative_to(self.root).as_posix())
        return rel, {_defect_name(part) for part in rel.parts}

    def find(self, image: AbnormalImage) -> Path | None:
        candidates = self.by_stem.get(image.path.stem, [])
        if self.typed:
            same_tree = [c for c in candidates if self._folders(c)[0] == image.rel_parent != PurePosixPath(".")]
            same_type = [c for c in candidates if image.defect in self._folders(c)[1]]
            candidates = same_tree or same_type
        if len(candidates) > 1:
            places = ", ".join(c.relative_to(self.root).as_posix() for c in candidates[:3])
            self.ambiguous.append(f"{image.defect}/{image.path.name}: several masks match ({places})")
            return None
        if not candidates:
            return None
        mask = candidates[0]
        other = self.used.get(mask)
        if other is not None and other.defect != image.defect:
            self.ambiguous.append(
                f"{image.defect}/{image.path.name}: its mask {mask.name} also matches {other.defect}/{other.path.name}"
            )
            return None
        self.used[mask] = image
        return mask

    def unused(self) -> list[Path]:
        return sorted(p for paths in self.by_stem.values() for p in paths if p not in self.used)


# ---- placing files ----------------------------------------------------------------------------------------


class _Placer:
    """Writes one dataset into a staging folder: links or converts images, converts masks, keeps statistics."""

    def __init__(
        self,
        staging: Path,
        report: ImportReport,
        move: bool,
        progress: ProgressFn | None,
        total: int,
        origin: Callable[[Path], str] | None = None,
    ):
        self.staging, self.report, self.move = staging, report, move
        self.origin = origin or (lambda p: str(p.resolve()))
        self.progress, self.total, self.done = progress, total, 0
        self.sizes: Counter = Counter()
        self.channels: Counter = Counter()
        self.linked = Counter()
        self.files: dict[str, str] = {}  # path inside the dataset -> the user's file
        self._taken: set[Path] = set()

    def _tick(self) -> None:
        self.done += 1
        if self.progress and (self.done % 25 == 0 or self.done == self.total):
            self.progress(self.done, self.total)

    def _target(self, folder: Path, stem: str, suffix: str = ".png") -> Path:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "image"
        target, n = folder / f"{stem}{suffix}", 1
        while target in self._taken:
            target, n = folder / f"{stem}_{n}{suffix}", n + 1
        self._taken.add(target)
        return target

    def image(self, source: Path, folder: str) -> Path | None:
        """Place one image under ``folder`` (relative to the dataset); None (and a note) if unreadable."""
        self._tick()
        try:
            rgb, kind, plain = images.read_image_kind(source)
        except ImageError as exc:
            self.report.skipped.append((str(source), str(exc)))
            return None
        self.sizes[(rgb.shape[1], rgb.shape[0])] += 1
        self.channels[kind] += 1
        target = self._target(self.staging / folder, source.stem)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.files[target.relative_to(self.staging).as_posix()] = self.origin(source)
        if plain and source.suffix.lower() == ".png":
            self.linked[_link(source, target, self.move)] += 1
        else:
            target.write_bytes(images.to_png_bytes(rgb))
            self.linked["converted"] += 1
        return target

    def mask(self, source: Path, image_target: Path, defect: str) -> bool:
        """Place a mask for an image already placed. A mask of another size is resized to the image
        (nearest neighbour, so it stays binary) and a colour mask is read as "any non-black pixel is defect";
        both are named in the report, so nobody is surprised by pixel metrics later."""
        try:
            size = images.image_size(image_target)
            shape = (size[1], size[0]) if size else None
            mask, native, colour = images.read_mask_checked(source, shape=shape)  # one decode
        except ImageError as exc:
            self.report.skipped.append((str(source), str(exc)))
            return False
        if shape is not None and native != shape:
            self.report.notes.append(
                f"The mask {source.name} is {native[1]}×{native[0]} for a {shape[1]}×{shape[0]} image: "
                "resized to the image (nearest neighbour)."
            )
        if colour:
            self.report.notes.append(f"The mask {source.name} is in colour: any non-black pixel counts as defect.")
        target = self.staging / "ground_truth" / defect / f"{image_target.stem}_mask.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(images.to_png_bytes(mask))
        if not mask.any():
            self.report.notes.append(f"The mask {source.name} is empty (no defect pixels).")
        return True


def _link(source: Path, target: Path, move: bool) -> str:
    """Hard link (same file system), else symlink; ``move`` for files that are ours (an unpacked zip)."""
    if move:
        os.replace(source, target)
        return "moved"
    try:
        os.link(source.resolve(), target)
        return "hard-linked"
    except OSError:  # another file system, or a file we may read but not link (fs.protected_hardlinks)
        os.symlink(source.resolve(), target)
        return "symlinked"


# ---- the importer -------------------------------------------------------------------------------------------


def _runs_using(name: str, cfg: Settings) -> list[str]:
    if not cfg.registry_path.exists():
        return []
    return [
        r.id for r in RunRegistry(cfg).list() if r.dataset.get("kind") == "folder" and r.dataset.get("category") == name
    ]


def check_replaceable(name: str, replace: bool, cfg: Settings) -> None:
    final = custom_root(cfg) / name
    if not final.exists():
        return
    if not replace:
        raise DatasetError(
            f"A dataset named '{name}' is already imported. Choose another name, or replace it "
            "(CLI: --replace; page: tick 'Replace')."
        )
    used = _runs_using(name, cfg)
    if used:
        raise DatasetError(
            f"Dataset '{name}' cannot be replaced: {len(used)} run(s) were trained on it ({', '.join(used[:5])}) and "
            "their results point at its files. Import under a new name, or delete those runs first."
        )


STALE = re.compile(r"^\.(?P<name>.+)\.(importing|replaced)-(?P<pid>\d+)$|^\.(?P<zip>.+)-(?P<zpid>\d+)-\d+$")


def sweep_stale(cfg: Settings | None = None) -> list[str]:
    """Remove what imports killed mid-way (``kill -9``, a power cut) left: their hidden staging, replaced and
    unpacking folders, whose process is gone. A live import's folders are kept. Returns the names removed."""
    cfg = cfg or current_settings()
    removed = []
    for folder in (custom_root(cfg), cfg.datasets_dir / "uploads"):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = STALE.match(entry.name)
            if match is None or not entry.is_dir():
                continue
            pid = int(match.group("pid") or match.group("zpid"))
            if pid != os.getpid() and not process_alive(pid, None):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    return removed


def _split_normals(normals: list[Path], test_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """A deterministic hold-out of normal images for testing (at least one when there are two or more)."""
    shuffled = normals[:]
    random.Random(seed).shuffle(shuffled)
    n_test = int(round(len(shuffled) * test_fraction))
    n_test = min(max(n_test, 1), len(shuffled) - 1) if len(shuffled) >= 2 else 0
    return sorted(shuffled[n_test:]), sorted(shuffled[:n_test])


def import_images(
    name: str,
    train_normals: list[Path],
    test_normals: list[Path],
    abnormal: list[AbnormalImage],
    masks: MaskIndex | None = None,
    source: dict | None = None,
    replace: bool = False,
    move: bool = False,
    cfg: Settings | None = None,
    progress: ProgressFn | None = None,
    origin: Callable[[Path], str] | None = None,
) -> ImportReport:
    """Write one dataset from lists of files (the folder and zip imports both end here). ``origin`` names a
    file as the user knows it (default: its resolved path)."""
    cfg = cfg or current_settings()
    t0 = time.perf_counter()
    name = safe_name(name)
    access.check_write(
        "import dataset", cfg, name=name, replace=replace, images=len(train_normals) + len(test_normals) + len(abnormal)
    )
    check_replaceable(name, replace, cfg)
    root = custom_root(cfg)
    final = root / name
    sweep_stale(cfg)  # an import killed earlier left its staging folder: it never became a dataset
    staging = root / f".{name}.importing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    report = ImportReport(DatasetSpec("folder", name, str(root)))
    placer = _Placer(staging, report, move, progress, len(train_normals) + len(test_normals) + len(abnormal), origin)
    counts: dict[str, int] = {"train normal": 0, "test normal": 0}
    try:
        for p in train_normals:
            counts["train normal"] += placer.image(p, "train/good") is not None
        for p in test_normals:
            counts["test normal"] += placer.image(p, "test/good") is not None
        missing_mask: list[str] = []
        for item in abnormal:
            target = placer.image(item.path, f"test/{item.defect}")
            if target is None:
                continue
            counts[f"test {item.defect}"] = counts.get(f"test {item.defect}", 0) + 1
            mask = masks.find(item) if masks is not None else None
            if mask is None or not placer.mask(mask, target, item.defect):
                missing_mask.append(item.path.name)
        if counts["train normal"] == 0:
            raise DatasetError(
                "None of the normal images could be read, so nothing was imported"
                + (f" (e.g. {Path(report.skipped[0][0]).name}: {report.skipped[0][1]})" if report.skipped else "")
                + "."
            )
        _notes(report, placer, counts, masks, missing_mask)
        report.counts = counts
        report.seconds = time.perf_counter() - t0
        (staging / "source.json").write_text(
            json.dumps(
                {
                    **(source or {}),
                    "imported_at": time.time(),
                    "counts": counts,
                    "skipped": report.skipped,
                    "notes": report.notes,
                    "placement": dict(placer.linked),
                },
                indent=2,
            )
        )
        (staging / "files.json").write_text(json.dumps(placer.files))
        # Swap in the complete import; an earlier one of the same name goes only now (check_replaceable).
        if final.exists():
            old = root / f".{name}.replaced-{os.getpid()}"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _notes(
    report: ImportReport, placer: _Placer, counts: dict, masks: MaskIndex | None, missing_mask: list[str]
) -> None:
    notes = report.notes
    n_abnormal = sum(v for k, v in counts.items() if k.startswith("test ") and k != "test normal")
    if masks is not None and n_abnormal:
        if len(missing_mask) == n_abnormal:
            raise DatasetError(
                f"None of the {n_abnormal} abnormal images pairs with a mask in {masks.root} ({len(masks)} mask "
                f"files). Masks pair by file name: scratch_01.png ↔ scratch_01.png, scratch_01_mask.png or "
                f"scratch_01_gt.png, in any sub-folder (a folder named like the defect type wins). Rename the "
                "masks, or import without masks."
            )
        if missing_mask:
            notes.append(
                f"{len(missing_mask)} of {n_abnormal} abnormal image(s) have no mask "
                f"(e.g. {', '.join(missing_mask[:3])}): they count for image metrics; pixel metrics use "
                f"the {n_abnormal - len(missing_mask)} that have one."
            )
        if masks.ambiguous:
            report.notes.append(
                f"{len(masks.ambiguous)} abnormal image(s) were left without a mask because it could not be told "
                f"which mask is theirs: {'; '.join(masks.ambiguous[:3])}. Put masks under a folder named like the "
                "defect type (masks/scratch/x1.png) or give them unique names."
            )
        unused = masks.unused()
        if unused:
            notes.append(
                f"{len(unused)} mask file(s) pair with no image and were ignored "
                f"(e.g. {', '.join(p.name for p in unused[:3])})."
            )
    elif n_abnormal:
        notes.append("No masks: image metrics only; pixel AUROC, pixel F1 and AUPRO will show as not available.")
    if not n_abnormal:
        notes.append(
            f"No abnormal images: a run will train and score the {counts['test normal']} held-out normal image(s), "
            "but AUROC, F1 and per-defect recall need abnormal ones. Import again with a folder of defects to "
            "evaluate."
        )
    if len(placer.sizes) > 1:
        common = ", ".join(f"{w}×{h} ({n})" for (w, h), n in placer.sizes.most_common(3))
        notes.append(
            f"Images come in {len(placer.sizes)} sizes ({common}{', …' if len(placer.sizes) > 3 else ''}): "
            "each is resized to the model's square input, so aspect ratios are not kept."
        )
    if len(placer.channels) > 1:
        kinds = ", ".join(f"{k} {n}" for k, n in placer.channels.most_common())
        notes.append(f"Mixed colour formats ({kinds}): all are used as 8-bit RGB.")
    converted = placer.linked.get("converted", 0)
    if converted:
        notes.append(f"{converted} image(s) (JPEG, BMP, TIFF, 16-bit, alpha…) were converted once to 8-bit PNG.")
    if placer.linked.get("symlinked"):
        notes.append(
            f"{placer.linked['symlinked']} PNG(s) are symlinked (another file system): keep the originals "
            "where they are, or import again after moving them."
        )


def import_folder(
    name: str,
    normal_dir: Path | str,
    abnormal_dir: Path | str | None = None,
    mask_dir: Path | str | None = None,
    normal_test_dir: Path | str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    replace: bool = False,
    cfg: Settings | None = None,
    progress: ProgressFn | None = None,
    move: bool = False,
    source: dict | None = None,
    origin: Callable[[Path], str] | None = None,
) -> ImportReport:
    """Import own folders (see module docstring). Without ``normal_test_dir`` a deterministic
    ``test_fraction`` of the normal images is held out for testing. ``move`` is for files that are ours."""
    access.ensure_writable("import dataset")  # before scanning thousands of files
    normal_dir = _existing_dir(normal_dir, "Normal-images")
    normals = images.list_images(normal_dir, recursive=True)
    if not normals:
        raise DatasetError(f"No images found in {normal_dir} (looked for {', '.join(images.IMAGE_SUFFIXES)}).")
    abnormal: list[AbnormalImage] = []
    if abnormal_dir:
        abnormal_dir = _existing_dir(abnormal_dir, "Abnormal-images")
        abnormal = defect_groups(abnormal_dir)
        if not abnormal:
            raise DatasetError(f"No images found in {abnormal_dir}.")
    masks = None
    if mask_dir:
        mask_dir = _existing_dir(mask_dir, "Mask")
        if not abnormal:
            raise DatasetError("Masks mark defects in abnormal images: give the abnormal-images folder too.")
        masks = MaskIndex(mask_dir)
        if not len(masks):
            raise DatasetError(f"No mask images found in {mask_dir}.")
    if normal_test_dir:
        test_dir = _existing_dir(normal_test_dir, "Normal test-images")
        train, test = normals, images.list_images(test_dir, recursive=True)
    else:
        train, test = _split_normals(normals, test_fraction, seed)
    source = source or {
        "normal_dir": str(normal_dir.resolve()),
        "abnormal_dir": str(Path(abnormal_dir).resolve()) if abnormal_dir else "",
        "mask_dir": str(Path(mask_dir).resolve()) if mask_dir else "",
    }
    return import_images(name, train, test, abnormal, masks, source, replace, move, cfg, progress, origin)


def _existing_dir(path: Path | str, what: str) -> Path:
    path = Path(str(path).strip()).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{what} folder {path} does not exist" + (" (it is a file)." if path.is_file() else "."))
    return path


# ---- zips ---------------------------------------------------------------------------------------------------


def _check_member(info: zipfile.ZipInfo) -> str | None:
    """Why a member can't be unpacked safely (None if it can)."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "its path leaves the upload folder"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "it is a symbolic link"
    return None


def _unpack(zip_path: Path, into: Path) -> int:
    """Check, then unpack a zip. Returns the number of files written."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{Path(zip_path).name} is not a readable zip file ({exc}).") from None
    with archive:
        members = [i for i in archive.infolist() if not i.is_dir()]
        for info in members:
            problem = _check_member(info)
            if problem:
                raise DatasetError(
                    f"The zip was refused because the member '{info.filename}' is unsafe: {problem}. "
                    "Nothing was unpacked."
                )
        members = [
            i for i in members if "__MACOSX" not in i.filename and not PurePosixPath(i.filename).name.startswith(".")
        ]
        if not members:
            raise DatasetError(f"{Path(zip_path).name} is empty: it holds no files.")
        if len(members) > MAX_ZIP_FILES:
            raise DatasetError(f"The zip holds {len(members):,} files; the limit is {MAX_ZIP_FILES:,}.")
        total = sum(i.file_size for i in members)
        packed = sum(i.compress_size for i in members)
        if total > MAX_ZIP_BYTES:
            raise DatasetError(
                f"The zip unpacks to {total / 2**30:.1f} GB; the limit is {MAX_ZIP_BYTES / 2**30:.0f} GB. "
                "Split it, or import the folders directly (nothing is copied then)."
            )
        if total > 64 << 20 and total > MAX_ZIP_RATIO * max(packed, 1):
            raise DatasetError(
                f"The zip unpacks to {total / 2**20:,.0f} MB from {packed / 2**20:,.1f} MB "
                f"({total / max(packed, 1):,.0f}×): image data never compresses that much, so it was "
                "refused as a likely zip bomb."
            )
        into.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(into).free
        if total + DISK_MARGIN_BYTES > free:
            raise DatasetError(
                f"Not enough disk space: the zip unpacks to {total / 2**30:.2f} GB and "
                f"{free / 2**30:.2f} GB are free at {into}."
            )
        root = into.resolve()
        for info in members:
            target = (into / info.filename).resolve()
            if not target.is_relative_to(root):  # belt and braces after _check_member
                raise DatasetError(f"The zip member '{info.filename}' leaves the upload folder; refused.")
            target.parent.mkdir(parents=True, exist_ok=True)
            # ZipExtFile stops at the declared size and checks the CRC: a lying header can't overfill the disk.
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                # A damaged copy, or a header that lies about the data (CRC mismatch): refuse the whole zip.
                raise DatasetError(
                    f"{Path(zip_path).name} is damaged: its member '{info.filename}' cannot be read ({exc}). "
                    "Nothing was imported; copy the zip again or re-create it."
                ) from None
        for info in archive.infolist():  # empty folders too: an empty train/good must read as one, not be skipped
            target = (into / info.filename).resolve()
            if info.is_dir() and _check_member(info) is None and target.is_relative_to(root):
                target.mkdir(parents=True, exist_ok=True)
    return len(members)


def _layout_base(raw: Path) -> Path:
    """The folder that holds the layout: zips usually wrap it in one or two top folders (line3/dataset/…)."""
    base = raw
    while not (base / "train").is_dir() and _first(base, NORMAL_NAMES) is None:
        entries = [p for p in base.iterdir() if not p.name.startswith((".", "__"))]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        base = entries[0]
    return base


def _first(base: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (base / n).is_dir():
            return base / n
    return None


def import_zip(
    name: str,
    zip_path: Path | str,
    replace: bool = False,
    cfg: Settings | None = None,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import a zip (see module docstring). The unpacked files are ours, so they are moved into the dataset and
    the unpacked folder is removed afterwards."""
    cfg = cfg or current_settings()
    name = safe_name(name)
    access.check_write("import dataset", cfg, name=name, zip=Path(zip_path).name, replace=replace)
    check_replaceable(name, replace, cfg)  # before unpacking gigabytes
    sweep_stale(cfg)
    raw = cfg.datasets_dir / "uploads" / f".{name}-{os.getpid()}-{int(time.time() * 1000)}"
    try:
        n_files = _unpack(Path(zip_path), raw)
        base = _layout_base(raw)
        source = {"zip": Path(zip_path).name, "zip_files": n_files}
        zip_name = Path(zip_path).name

        def origin(p: Path) -> str:  # the unpacked copy is deleted: name the member inside the zip
            return f"{zip_name}:{p.relative_to(raw).as_posix()}"

        if (base / "train" / "good").is_dir():  # MVTec AD layout
            test = base / "test"
            defects = [d for d in sorted(test.iterdir()) if d.is_dir() and d.name != "good"] if test.is_dir() else []
            abnormal = [
                AbnormalImage(p, _defect_name(d.name), PurePosixPath(p.parent.relative_to(test).as_posix()))
                for d in defects
                for p in images.list_images(d, recursive=True)
            ]
            train = images.list_images(base / "train" / "good", recursive=True)
            if (test / "good").is_dir():
                test_normals = images.list_images(test / "good", recursive=True)
            else:
                train, test_normals = _split_normals(train, 0.2, 0)
            gt = base / "ground_truth"
            masks = MaskIndex(gt) if gt.is_dir() and abnormal else None
            if not train:
                raise DatasetError("The zip's train/good folder holds no images.")
            return import_images(
                name, train, test_normals, abnormal, masks, source, replace, True, cfg, progress, origin
            )
        normal = _first(base, NORMAL_NAMES)
        if normal is None:
            found = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in base.iterdir())[:8]) or "nothing"
            raise DatasetError(
                "The zip must hold MVTec AD's layout (train/good, test/<defect type>, ground_truth/<defect type>) or "
                f"a folder named 'normal' (with optional 'abnormal' and 'masks' folders). Found: {found}."
            )
        return import_folder(
            name,
            normal,
            _first(base, ABNORMAL_NAMES),
            _first(base, MASK_NAMES),
            replace=replace,
            cfg=cfg,
            progress=progress,
            move=True,
            source=source,
            origin=origin,
        )
    finally:
        shutil.rmtree(raw, ignore_errors=True)
