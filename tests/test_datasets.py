"""Own images, zips and MVTec categories: good input is imported, bad input gets a clear message."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from core import datasets
from core.demo_data import make_demo_image
from core.errors import DatasetError


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)
    return path


@pytest.fixture
def own_folders(tmp_path):
    root = tmp_path / "line3"
    for i in range(6):
        img, _ = make_demo_image("good", seed=i, size=96)
        _write(root / "normal" / f"ok_{i}.jpg", img)
    for kind in ("scratch", "spot"):
        for i in range(2):
            img, mask = make_demo_image(kind, seed=50 + i, size=96)
            _write(root / "abnormal" / kind / f"{kind}{i}.png", img)
            _write(root / "masks" / kind / f"{kind}{i}_mask.png", mask.astype(np.uint8) * 255)
    return root


def test_importing_own_folders_gives_defect_types_from_subfolder_names(artifacts, own_folders):
    report = datasets.import_folder("line3", own_folders / "normal", own_folders / "abnormal",
                                    own_folders / "masks")
    samples = datasets.test_samples(report.spec)
    assert {s.defect_type for s in samples} == {"good", "scratch", "spot"}
    assert all(s.mask_path for s in samples if s.label == 1)
    assert report.counts["train normal"] + report.counts["test normal"] == 6
    assert datasets.list_custom() == ["line3"]


def test_a_corrupt_file_is_skipped_and_reported_not_fatal(artifacts, own_folders):
    (own_folders / "normal" / "broken.png").write_text("this is not an image")
    report = datasets.import_folder("line3", own_folders / "normal", own_folders / "abnormal")
    assert any("broken.png" in path for path, _ in report.skipped)
    assert "Skipped 1" in report.summary()


def test_masks_that_do_not_pair_with_images_are_named(artifacts, own_folders):
    (own_folders / "masks" / "spot" / "spot1_mask.png").unlink()
    with pytest.raises(DatasetError, match="spot1.png"):
        datasets.import_folder("line3", own_folders / "normal", own_folders / "abnormal", own_folders / "masks")


def test_empty_folders_are_refused_clearly(artifacts, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images found"):
        datasets.import_folder("x", tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.import_folder("x", tmp_path / "missing")


def test_a_zip_of_normal_and_abnormal_folders_imports(artifacts, own_folders, tmp_path):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in own_folders.rglob("*"):
            if f.is_file():
                zf.write(f, f.relative_to(own_folders.parent))
    report = datasets.import_zip("zipped", archive)
    assert report.counts["test scratch"] == 2


def test_a_file_that_is_not_a_zip_is_refused(artifacts, tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_text("nope")
    with pytest.raises(DatasetError, match="not a readable zip"):
        datasets.import_zip("x", bad)


def test_an_unknown_mvtec_category_lists_the_real_ones(artifacts):
    with pytest.raises(DatasetError, match="Unknown MVTec AD category 'tiles'.*tile"):
        datasets.mvtec("tiles")


def test_a_missing_mvtec_category_offline_names_the_expected_folder(artifacts, tmp_path):
    spec = datasets.mvtec("leather", root=tmp_path / "mvtec")
    with pytest.raises(DatasetError, match=str(tmp_path / "mvtec" / "leather")):
        datasets.check_available(spec)
