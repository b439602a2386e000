"""Importing own images (core.data.importing): masks pair with their own image, damaged zips are refused clearly."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

from core.config import PROJECT_ROOT
from core.data import datasets, importing
from core.data.demo_data import make_demo_image
from core.data.images import read_mask


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)
    return path


def _normals(root: Path, n: int = 5, size: int = 64) -> Path:
    for i in range(n):
        _write(root / "normal" / f"ok_{i}.png", make_demo_image("good", seed=i, size=size)[0])
    return root / "normal"


def _mask_of(name: str, defect: str) -> np.ndarray:
    test = datasets.test_samples(datasets.custom(name))
    sample = next(s for s in test if s.defect_type == defect)
    return read_mask(sample.mask_path) if sample.mask_path else None


def test_a_mask_comes_from_the_images_own_defect_type_never_another(artifacts, tmp_path):
    """abnormal/scratch/x1.png and abnormal/dent/x1.png, masks only under masks/scratch/: dent gets none."""
    root = tmp_path / "line"
    _normals(root)
    for defect, seed in (("scratch", 20), ("dent", 21)):
        _write(root / "abnormal" / defect / "x1.png", make_demo_image("scratch", seed=seed, size=64)[0])
    scratch_mask = np.zeros((64, 64), np.uint8)
    scratch_mask[10:20, 5:60] = 255
    _write(root / "masks" / "scratch" / "x1.png", scratch_mask)
    report = importing.import_folder("line", root / "normal", root / "abnormal", root / "masks")
    assert _mask_of("line", "scratch").sum() == (scratch_mask > 0).sum()
    assert _mask_of("line", "dent") is None  # not the scratch outline
    assert any("have no mask" in n and "x1.png" in n for n in report.notes)


def test_a_flat_mask_folder_that_fits_images_of_two_types_is_reported_not_guessed(artifacts, tmp_path):
    root = tmp_path / "flat"
    _normals(root)
    for defect in ("scratch", "dent"):
        _write(root / "abnormal" / defect / "x1.png", make_demo_image("scratch", seed=3, size=64)[0])
    _write(root / "masks" / "x1_mask.png", np.full((64, 64), 255, np.uint8))
    report = importing.import_folder("flat", root / "normal", root / "abnormal", root / "masks")
    assert any("could not be told which mask is theirs" in n and "also matches" in n for n in report.notes)
    masked = [s for s in datasets.test_samples(datasets.custom("flat")) if s.mask_path]
    assert len(masked) == 1  # the first image of a type keeps it; the second is named, not guessed


def test_a_mask_of_another_size_is_resized_to_its_image_and_named(artifacts, tmp_path):
    root = tmp_path / "sizes"
    _normals(root, size=128)
    _write(root / "abnormal" / "spot" / "s1.png", make_demo_image("spot", seed=4, size=128)[0])
    small = np.zeros((64, 64), np.uint8)
    small[16:32, 16:32] = 255
    _write(root / "masks" / "spot" / "s1.png", small)
    report = importing.import_folder("sizes", root / "normal", root / "abnormal", root / "masks")
    mask = _mask_of("sizes", "spot")
    assert mask.shape == (128, 128) and mask[32:64, 32:64].all() and mask.sum() == 32 * 32
    assert any("64×64 for a 128×128 image: resized" in n for n in report.notes)


def test_a_colour_mask_is_read_as_any_non_black_pixel_and_named(artifacts, tmp_path):
    root = tmp_path / "colour"
    _normals(root)
    _write(root / "abnormal" / "stain" / "c1.png", make_demo_image("spot", seed=5, size=64)[0])
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[5:15, 5:15] = (200, 30, 30)
    _write(root / "masks" / "stain" / "c1.png", rgb)
    report = importing.import_folder("colour", root / "normal", root / "abnormal", root / "masks")
    assert _mask_of("colour", "stain").sum() == 100
    assert any("c1.png is in colour" in n for n in report.notes)


def _crc_broken_zip(path: Path) -> Path:
    """A zip whose member data does not match its header's CRC (a damaged copy, or a header that lies)."""
    ok = cv2.imencode(".png", make_demo_image("good", seed=1, size=64)[0])[1].tobytes()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.writestr(f"normal/ok_{i}.png", ok)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("normal/ok_1.png")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 40] ^= 0xFF  # one byte of pixel data: sizes still agree, the CRC does not
    path.write_bytes(bytes(data))
    return path


def test_a_zip_with_a_crc_error_is_one_clear_message_and_leaves_nothing(artifacts, tmp_path):
    archive = _crc_broken_zip(tmp_path / "damaged.zip")
    result = subprocess.run(
        [sys.executable, "-m", "core", "data", "import", "line9", "--zip", str(archive)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "damaged.zip is damaged" in result.stderr and "normal/ok_1.png" in result.stderr
    assert "Traceback" not in result.stderr
    assert "line9" not in datasets.list_custom()
    uploads = artifacts / "datasets" / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # the half-unpacked copy is gone


def _bmp_folder(root: Path, n: int) -> Path:
    """n small BMPs: each is converted to PNG at import (slower than linking), so a kill lands mid-way."""
    tile = make_demo_image("good", seed=0, size=64)[0]
    for i in range(n):
        _write(root / f"part_{i:05d}.bmp", np.roll(tile, i, axis=1))
    return root


def test_an_import_killed_mid_way_leaves_no_dataset_and_the_next_import_cleans_up(artifacts, tmp_path):
    import signal
    import time

    normal = _bmp_folder(tmp_path / "normal", 3000)
    root = datasets.custom_root()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "data", "import", "line3", "--normal", str(normal)],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staging = root / f".line3.importing-{proc.pid}"
    deadline = time.time() + 120
    while time.time() < deadline and not (staging / "train" / "good").is_dir():
        time.sleep(0.01)
    time.sleep(0.3)  # some images written, not all
    assert proc.poll() is None, "the import finished before it could be killed: give it more images"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    assert staging.is_dir() and any((staging / "train" / "good").iterdir())  # killed with work on disk...
    assert not (root / "line3").exists() and "line3" not in datasets.list_custom()  # ...but no dataset
    assert (
        "line3"
        not in subprocess.run(
            [sys.executable, "-m", "core", "data", "list"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )

    small = _bmp_folder(tmp_path / "again", 6)
    report = importing.import_folder("line3", small)
    assert report.counts["train normal"] + report.counts["test normal"] == 6
    assert not staging.exists()  # swept: the killed import's leftovers are gone
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []
