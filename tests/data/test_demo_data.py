"""The synthetic demo dataset: MVTec layout, exact masks, deterministic, generated once."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from core.data.demo_data import DEMO_DEFECT_TYPES, _image_seed, generate_demo_dataset, make_demo_image
from core.data.images import list_images, read_image, read_mask
from core.errors import DatasetError

SMALL = dict(n_train=3, n_test_good=2, n_test_per_defect=2, size=64)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ single images


@pytest.mark.parametrize("kind", DEMO_DEFECT_TYPES)
def test_defect_mask_is_exactly_where_the_image_differs_from_the_clean_render(kind: str) -> None:
    for seed in range(5):
        image, mask = make_demo_image(kind, seed)
        clean, clean_mask = make_demo_image("good", seed)

        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert mask.shape == (256, 256) and mask.dtype == np.bool_
        assert not clean_mask.any()
        np.testing.assert_array_equal(mask, (image != clean).any(axis=2))
        assert 0.001 < mask.mean() < 0.05  # local: well under a few percent of the area


@pytest.mark.parametrize("kind", DEMO_DEFECT_TYPES)
def test_defects_are_clearly_visible(kind: str) -> None:
    image, mask = make_demo_image(kind, 3)
    clean, _ = make_demo_image("good", 3)
    change = np.abs(image.astype(int) - clean.astype(int)).max(axis=2)[mask]
    assert change.mean() > 40


def test_normal_images_vary_but_share_one_texture() -> None:
    a, _ = make_demo_image("good", 1)
    b, _ = make_demo_image("good", 2)
    assert not np.array_equal(a, b)
    # Same weave: the two images' spectra peak at the same thread frequency.
    spectra = [np.abs(np.fft.rfft2(img.mean(axis=2) - img.mean())) for img in (a, b)]
    peaks = [np.unravel_index(np.argmax(s), s.shape) for s in spectra]
    assert peaks[0] == peaks[1]


def test_same_seed_gives_the_same_image_and_other_sizes_work() -> None:
    first = make_demo_image("spot", 11, size=96)
    second = make_demo_image("spot", 11, size=96)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[0].shape == (96, 96, 3) and first[1].any()


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="scratch"):
        make_demo_image("dent", 0)


# ------------------------------------------------------------------------------------------ dataset


def test_default_dataset_has_mvtec_layout_and_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    folder = generate_demo_dataset(tmp_path)
    elapsed = time.perf_counter() - start

    assert folder == tmp_path / "demo"
    assert elapsed < 5
    assert len(list_images(folder / "train" / "good")) == 24
    assert len(list_images(folder / "test" / "good")) == 8
    assert sorted(p.name for p in (folder / "test").iterdir()) == sorted(["good", *DEMO_DEFECT_TYPES])
    assert sorted(p.name for p in (folder / "ground_truth").iterdir()) == sorted(DEMO_DEFECT_TYPES)
    for defect in DEMO_DEFECT_TYPES:
        assert [p.name for p in list_images(folder / "test" / defect)] == [f"{i:03d}.png" for i in range(6)]
    assert (folder / "train" / "good" / "000.png").is_file()
    assert read_image(folder / "train" / "good" / "023.png").shape == (256, 256, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary folders left behind


def test_every_defect_image_has_one_binary_mask_matching_its_pixels(tmp_path: Path) -> None:
    folder = generate_demo_dataset(tmp_path, "parts", seed=7, **SMALL)

    for defect in DEMO_DEFECT_TYPES:
        images = list_images(folder / "test" / defect)
        masks = list_images(folder / "ground_truth" / defect)
        assert [m.name for m in masks] == [f"{p.stem}_mask.png" for p in images]
        for index, (image_path, mask_path) in enumerate(zip(images, masks, strict=False)):
            raw = read_image(mask_path)
            assert set(np.unique(raw).tolist()) == {0, 255}
            expected_image, expected_mask = make_demo_image(defect, _image_seed(7, "test", defect, index), 64)
            np.testing.assert_array_equal(read_image(image_path), expected_image)
            np.testing.assert_array_equal(read_mask(mask_path), expected_mask)
    assert not (folder / "ground_truth" / "good").exists()


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    a = _files(generate_demo_dataset(tmp_path / "a", seed=3, **SMALL))
    b = _files(generate_demo_dataset(tmp_path / "b", seed=3, **SMALL))
    c = _files(generate_demo_dataset(tmp_path / "c", seed=4, **SMALL))

    assert a == b
    assert a.keys() == c.keys()
    assert a["train/good/000.png"] != c["train/good/000.png"]


def test_second_call_with_same_parameters_reuses_the_folder(tmp_path: Path) -> None:
    folder = generate_demo_dataset(tmp_path, **SMALL)
    marker = folder / "train" / "good" / "000.png"
    stamp = marker.stat().st_mtime_ns

    again = generate_demo_dataset(tmp_path, **SMALL)

    assert again == folder
    assert marker.stat().st_mtime_ns == stamp


def test_changed_parameters_or_missing_files_regenerate(tmp_path: Path) -> None:
    folder = generate_demo_dataset(tmp_path, **SMALL)
    bigger = {**SMALL, "n_train": 5}

    generate_demo_dataset(tmp_path, **bigger)
    assert len(list_images(folder / "train" / "good")) == 5

    (folder / "test" / "crack" / "001.png").unlink()  # someone damaged it
    generate_demo_dataset(tmp_path, **bigger)
    assert (folder / "test" / "crack" / "001.png").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_a_user_folder_with_the_same_name_is_never_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "demo" / "train" / "good"
    mine.mkdir(parents=True)
    (mine / "precious.png").write_bytes(b"mine")

    with pytest.raises(DatasetError, match="not a generated demo dataset"):
        generate_demo_dataset(tmp_path, **SMALL)
    assert (mine / "precious.png").read_bytes() == b"mine"


def test_bad_parameters_are_refused_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="category"):
        generate_demo_dataset(tmp_path, "../escape")
    with pytest.raises(DatasetError, match="training image"):
        generate_demo_dataset(tmp_path, n_train=0)
