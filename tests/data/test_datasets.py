"""Importing own images and zips: good input is imported as it is, bad input gets a clear message, and nothing
the user owns is touched."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.data import datasets, importing
from core.data.demo_data import make_demo_image
from core.errors import DatasetError


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)
    return path


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` with its content hash and mode: proof that nothing was changed."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def own_folders(tmp_path):
    """A user's folders outside artifacts/: JPEG and PNG normals, two defect types, masks named x_mask.png."""
    root = tmp_path / "line3"
    for i in range(6):
        img, _ = make_demo_image("good", seed=i, size=96)
        _write(root / "normal" / (f"ok_{i}.jpg" if i % 2 else f"ok_{i}.png"), img)
    for kind in ("scratch", "spot"):
        for i in range(2):
            img, mask = make_demo_image(kind, seed=50 + i, size=96)
            _write(root / "abnormal" / kind / f"{kind}{i}.png", img)
            _write(root / "masks" / kind / f"{kind}{i}_mask.png", mask.astype(np.uint8) * 255)
    return root


def test_importing_own_folders_gives_defect_types_from_subfolder_names(artifacts, own_folders):
    report = importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal", own_folders / "masks")
    samples = datasets.test_samples(report.spec)
    assert {s.defect_type for s in samples} == {"good", "scratch", "spot"}
    assert all(s.mask_path for s in samples if s.label == 1)
    assert report.counts["train normal"] + report.counts["test normal"] == 6
    assert datasets.list_custom() == ["line3"]


def test_imported_files_keep_their_names_and_remember_where_they_came_from(artifacts, own_folders):
    report = importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal", own_folders / "masks")
    spot = [s for s in datasets.test_samples(report.spec) if s.defect_type == "spot"]
    assert sorted(Path(s.path).name for s in spot) == ["spot0.png", "spot1.png"]
    assert {s.source for s in spot} == {
        str((own_folders / "abnormal" / "spot" / f"spot{i}.png").resolve()) for i in range(2)
    }


def test_the_users_files_are_never_moved_or_changed(artifacts, own_folders):
    before = _fingerprint(own_folders)
    importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal", own_folders / "masks")
    (own_folders / "normal" / "broken.png").write_text("not an image")
    before["normal/broken.png"] = _fingerprint(own_folders)["normal/broken.png"]
    importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal", replace=True)
    assert _fingerprint(own_folders) == before


def test_a_corrupt_file_is_skipped_and_reported_not_fatal(artifacts, own_folders):
    (own_folders / "normal" / "broken.png").write_text("this is not an image")
    report = importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal")
    assert any("broken.png" in path for path, _ in report.skipped)
    assert "Skipped 1" in report.summary()


def test_an_abnormal_image_without_a_mask_is_kept_and_named(artifacts, own_folders):
    (own_folders / "masks" / "spot" / "spot1_mask.png").unlink()
    report = importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal", own_folders / "masks")
    assert report.counts["test spot"] == 2
    assert any("1 of 4 abnormal image(s) have no mask" in n and "spot1.png" in n for n in report.notes)
    unmasked = [s for s in datasets.test_samples(report.spec) if s.label == 1 and s.mask_path is None]
    assert [Path(s.path).name for s in unmasked] == ["spot1.png"]


def test_masks_that_pair_with_nothing_are_refused_with_the_naming_rule(artifacts, own_folders):
    for mask in (own_folders / "masks").rglob("*.png"):
        mask.rename(mask.with_name("gt_" + mask.name))
    with pytest.raises(DatasetError, match="None of the 4 abnormal images pairs with a mask.*scratch_01_mask.png"):
        importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal", own_folders / "masks")
    assert datasets.list_custom() == []  # nothing half-imported is left behind


def test_a_flat_mask_folder_pairs_by_name_and_extra_masks_are_reported(artifacts, own_folders, tmp_path):
    flat = tmp_path / "flat_masks"
    for mask in (own_folders / "masks").rglob("*.png"):
        _write(flat / mask.name.replace("_mask", ""), cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE))
    _write(flat / "orphan.png", np.zeros((96, 96), np.uint8))
    report = importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal", flat)
    assert all(s.mask_path for s in datasets.test_samples(report.spec) if s.label == 1)
    assert any("1 mask file(s) pair with no image" in n and "orphan.png" in n for n in report.notes)


def test_mixed_sizes_and_channel_counts_are_imported_and_reported(artifacts, tmp_path):
    for i in range(4):
        img, _ = make_demo_image("good", seed=i, size=96 if i % 2 else 128)
        _write(tmp_path / "n" / f"rgb{i}.png", img)
    _write(tmp_path / "n" / "grey.png", make_demo_image("good", seed=9, size=128)[0][..., 0])
    rgba = np.dstack([make_demo_image("good", seed=8, size=128)[0], np.full((128, 128), 255, np.uint8)])
    cv2.imwrite(str(tmp_path / "n" / "alpha.png"), rgba[..., [2, 1, 0, 3]])
    cv2.imwrite(
        str(tmp_path / "n" / "deep.png"), (make_demo_image("good", seed=7, size=128)[0][..., 0].astype(np.uint16) * 257)
    )
    report = importing.import_folder("mixed", tmp_path / "n")
    assert report.counts["train normal"] + report.counts["test normal"] == 7
    text = " ".join(report.notes)
    assert "2 sizes" in text and "aspect ratios are not kept" in text
    assert "Mixed colour formats" in text and "RGBA" in text and "16-bit" in text
    assert "No abnormal images" in text


def test_empty_folders_are_refused_clearly(artifacts, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images found"):
        importing.import_folder("x", tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        importing.import_folder("x", tmp_path / "missing")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.png").write_text("text, not pixels")
    (tmp_path / "notes" / "b.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="None of the normal images could be read"):
        importing.import_folder("x", tmp_path / "notes")
    assert datasets.list_custom() == []


def test_an_existing_dataset_is_replaced_only_when_asked(artifacts, own_folders):
    importing.import_folder("line3", own_folders / "normal")
    with pytest.raises(DatasetError, match="already imported"):
        importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal")
    report = importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal", replace=True)
    assert report.n_abnormal == 4


def test_a_failed_replacement_keeps_the_earlier_import(artifacts, own_folders, tmp_path):
    importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("nope")
    with pytest.raises(DatasetError):
        importing.import_folder("line3", tmp_path / "bad", replace=True)
    assert {s.defect_type for s in datasets.test_samples(datasets.custom("line3"))} == {"good", "scratch", "spot"}


def _zip(path: Path, files: dict[str, bytes], **kwargs) -> Path:
    with zipfile.ZipFile(path, "w", **kwargs) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _tree(folder: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_zip_of_normal_and_abnormal_folders_imports(artifacts, own_folders, tmp_path):
    archive = _zip(tmp_path / "upload.zip", _tree(own_folders, "line3/"))
    report = importing.import_zip("zipped", archive)
    assert report.counts["test scratch"] == 2
    assert all(s.mask_path for s in datasets.test_samples(report.spec) if s.label == 1)
    assert not list((artifacts / "datasets" / "uploads").glob("*"))  # the unpacked copy is gone


def test_a_zip_in_mvtec_layout_imports_with_its_own_test_split(artifacts, tmp_path):
    files = {}
    for i in range(5):
        files[f"part/train/good/{i:03d}.png"] = cv2.imencode(".png", make_demo_image("good", seed=i, size=64)[0])[
            1
        ].tobytes()
    files["part/test/good/000.png"] = cv2.imencode(".png", make_demo_image("good", seed=20, size=64)[0])[1].tobytes()
    img, mask = make_demo_image("crack", seed=3, size=64)
    files["part/test/crack/000.png"] = cv2.imencode(".png", img)[1].tobytes()
    files["part/ground_truth/crack/000_mask.png"] = cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes()
    report = importing.import_zip("part", _zip(tmp_path / "part.zip", files))
    assert report.counts == {"train normal": 5, "test normal": 1, "test crack": 1}
    assert datasets.test_samples(report.spec)[-1].mask_path


@pytest.mark.parametrize("member", ["../escape.png", "/etc/evil.png", "a/../../escape.png"])
def test_a_zip_with_path_traversal_names_is_refused_and_writes_nothing(artifacts, tmp_path, member):
    png = cv2.imencode(".png", make_demo_image("good", seed=1, size=32)[0])[1].tobytes()
    archive = _zip(tmp_path / "evil.zip", {"normal/a.png": png, member: png})
    with pytest.raises(DatasetError, match="unsafe"):
        importing.import_zip("evil", archive)
    assert not (tmp_path / "escape.png").exists() and not (artifacts / "datasets" / "escape.png").exists()
    assert datasets.list_custom() == []


def test_a_zip_with_a_symlink_member_is_refused(artifacts, tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("normal/passwd.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        importing.import_zip("link", archive)


def test_a_zip_that_inflates_to_gigabytes_is_refused_before_unpacking(artifacts, tmp_path):
    archive = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("normal/huge.bmp", "w", force_zip64=True) as fh,
    ):
        block = bytes(1 << 24)
        for _ in range(64):  # 1 GiB of zeros, ~1 MB packed
            fh.write(block)
    assert archive.stat().st_size < 8 << 20
    with pytest.raises(DatasetError, match="zip bomb"):
        importing.import_zip("bomb", archive)
    assert not any((artifacts / "datasets").rglob("huge.bmp"))


def test_an_empty_zip_and_a_zip_of_non_images_get_clear_messages(artifacts, tmp_path):
    with pytest.raises(DatasetError, match="empty"):
        importing.import_zip("empty", _zip(tmp_path / "empty.zip", {}))
    notes = _zip(tmp_path / "notes.zip", {"normal/readme.txt": b"hello", "normal/scan.png": b"not a png"})
    with pytest.raises(DatasetError, match="None of the normal images could be read"):
        importing.import_zip("notes", notes)
    wrong = _zip(tmp_path / "wrong.zip", {"photos/a.png": b"x", "photos/b.png": b"y", "other/c.png": b"z"})
    with pytest.raises(DatasetError, match="MVTec AD's layout.*Found: other/, photos/"):
        importing.import_zip("wrong", wrong)


def test_a_file_that_is_not_a_zip_is_refused(artifacts, tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_text("nope")
    with pytest.raises(DatasetError, match="not a readable zip"):
        importing.import_zip("x", bad)


def test_a_dataset_used_by_runs_is_never_replaced(artifacts, own_folders):
    from core.store.runs import RunRegistry

    report = importing.import_folder("line3", own_folders / "normal", own_folders / "abnormal")
    run = RunRegistry().create("patchcore", report.spec.to_dict(), {}, 0)
    with pytest.raises(DatasetError, match=f"cannot be replaced.*{run.id}"):
        importing.import_folder("line3", own_folders / "normal", replace=True)
    assert report.spec.path.is_dir() and datasets.test_samples(report.spec)


def test_links_to_originals_that_were_moved_are_reported_before_a_run(artifacts, own_folders):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(artifacts).st_dev:
        pytest.skip("needs a second file system (/dev/shm) to make the importer fall back to symlinks")
    elsewhere = Path(shm / f"aw-test-{os.getpid()}")
    try:
        _write(elsewhere / "n" / "a.png", make_demo_image("good", seed=1, size=64)[0])
        _write(elsewhere / "n" / "b.png", make_demo_image("good", seed=2, size=64)[0])
        report = importing.import_folder("linked", elsewhere / "n")
        assert any("symlinked" in n for n in report.notes)
        datasets.check_available(report.spec)
        (elsewhere / "n" / "a.png").unlink()
        with pytest.raises(DatasetError, match="links to files that no longer exist"):
            datasets.check_available(report.spec)
    finally:
        import shutil

        shutil.rmtree(elsewhere, ignore_errors=True)


def test_an_unknown_mvtec_category_lists_the_real_ones(artifacts):
    with pytest.raises(DatasetError, match="Unknown MVTec AD category 'tiles'.*tile"):
        datasets.mvtec("tiles")


def test_a_missing_mvtec_category_offline_names_the_expected_folder(artifacts, tmp_path):
    spec = datasets.mvtec("leather", root=tmp_path / "mvtec")
    with pytest.raises(DatasetError, match=str(tmp_path / "mvtec" / "leather")):
        datasets.check_available(spec)


def test_the_demo_on_disk_is_reused_as_it_is_so_earlier_runs_keep_their_training_set(artifacts):
    small = datasets.demo(n_train=4, n_test_good=2, n_test_per_defect=1, size=64)
    again = datasets.demo()  # what the launch form's Demo choice asks for: no settings
    assert again.path == small.path
    assert len(datasets.train_images(again)) == 4  # not regenerated with the default 24 images
