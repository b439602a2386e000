"""Reading user images: every readable format becomes HxWx3 uint8 RGB; every bad file a clear ImageError."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from core.data.images import (
    IMAGE_SUFFIXES,
    list_images,
    read_image,
    read_mask,
    to_png_bytes,
    validate_images,
)
from core.errors import ImageError, WorkbenchError


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_pil(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _save_cv2(path: Path, array: np.ndarray) -> Path:
    """Write with OpenCV (the only writer here for 16-bit colour and float TIFF); ``array`` is RGB."""
    if array.ndim == 3:
        array = array[..., ::-1]
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(array))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but holds no real pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------ bad files


def test_truncated_png_is_refused_with_its_name(tmp_path: Path) -> None:
    good = _save_pil(tmp_path / "full.png", Image.fromarray(_rgb(64, 64)))
    cut = tmp_path / "part_0042.png"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy

    with pytest.raises(ImageError, match="part_0042.png") as err:
        read_image(cut)
    assert "truncated" in str(err.value)


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    good = _save_pil(tmp_path / "full.jpg", Image.fromarray(_rgb(64, 64)), quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:-200])

    with pytest.raises(ImageError, match="cut.jpg"):
        read_image(cut)


def test_text_file_named_png_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image\n")

    with pytest.raises(ImageError, match="notes.png") as err:
        read_image(fake)
    assert "PNG, JPEG" in str(err.value)  # says which formats would work


def test_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.touch()

    with pytest.raises(ImageError, match=r"empty\.png is empty"):
        read_image(empty)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found.*ghost.png"):
        read_image(tmp_path / "ghost.png")


def test_folder_instead_of_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "looks_like.png").mkdir()
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path / "looks_like.png")


def test_bad_upload_bytes_are_named_by_the_upload(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="scan_7.png"):
        read_image(b"garbage bytes", name="scan_7.png")
    with pytest.raises(ImageError, match="empty"):
        read_image(b"", name="blank.png")


@pytest.mark.parametrize("width,height", [(12_000, 10_000), (20_000, 20_000)])
def test_gigantic_image_is_refused_before_decoding(tmp_path: Path, width: int, height: int) -> None:
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(width, height))

    with pytest.raises(ImageError, match="huge.png.*100 megapixels"):
        read_image(huge)


def test_zero_sized_image_is_refused(tmp_path: Path) -> None:
    zero = tmp_path / "zero.png"
    zero.write_bytes(_png_header_only(0, 10))

    with pytest.raises(ImageError, match="zero.png"):
        read_image(zero)


def test_errors_are_workbench_errors_so_pages_show_the_message(tmp_path: Path) -> None:
    assert issubclass(ImageError, WorkbenchError)


# ------------------------------------------------------------------------------------------ formats


def _assert_rgb8(image: np.ndarray, h: int, w: int) -> None:
    assert image.shape == (h, w, 3)
    assert image.dtype == np.uint8


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff", ".webp"])
def test_lossless_colour_formats_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    rgb = _rgb()
    kwargs = {"lossless": True} if suffix == ".webp" else {}
    path = _save_pil(tmp_path / f"img{suffix}", Image.fromarray(rgb), **kwargs)

    image = read_image(path)

    _assert_rgb8(image, 24, 32)
    np.testing.assert_array_equal(image, rgb)  # also proves channels come back in RGB order


def test_jpeg_reads_close_to_the_original(tmp_path: Path) -> None:
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0] = 200  # a flat red-ish colour survives JPEG almost unchanged
    rgb[..., 1] = 40
    rgb[..., 2] = 90
    path = _save_pil(tmp_path / "photo.JPEG", Image.fromarray(rgb), quality=95)

    image = read_image(path)

    _assert_rgb8(image, 32, 48)
    assert np.abs(image.astype(int) - rgb).max() <= 6


def test_grayscale_is_replicated_to_three_channels(tmp_path: Path) -> None:
    gray = _rgb()[..., 0]
    image = read_image(_save_pil(tmp_path / "gray.png", Image.fromarray(gray)))

    _assert_rgb8(image, 24, 32)
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], gray)


def test_rgba_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:5, :, 3] = 255  # top half opaque, bottom half fully transparent
    image = read_image(_save_pil(tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA")))

    _assert_rgb8(image, 10, 10)
    assert (image[:5] == (200, 100, 50)).all()
    assert (image[5:] == 0).all()


def test_gray_with_alpha_becomes_rgb(tmp_path: Path) -> None:
    la = Image.fromarray(_rgb()[..., 0]).convert("LA")
    image = read_image(_save_pil(tmp_path / "la.png", la))

    _assert_rgb8(image, 24, 32)
    np.testing.assert_array_equal(image[..., 0], np.asarray(la)[..., 0])


def test_palette_image_is_expanded_to_its_colours(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :4] = (255, 0, 0)
    rgb[:, 4:] = (0, 0, 255)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert pal.mode == "P"

    image = read_image(_save_pil(tmp_path / "pal.png", pal))

    np.testing.assert_array_equal(image, rgb)


def test_16bit_grayscale_png_is_scaled_by_full_range(tmp_path: Path) -> None:
    gray16 = np.array([[0, 257 * 128, 65535]], np.uint16)
    image = read_image(_save_cv2(tmp_path / "deep.png", gray16))

    _assert_rgb8(image, 1, 3)
    assert image[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_is_scaled_to_8bit(tmp_path: Path, suffix: str) -> None:
    rgb = _rgb()
    image = read_image(_save_cv2(tmp_path / f"deep{suffix}", rgb.astype(np.uint16) * 257))

    np.testing.assert_array_equal(image, rgb)


def test_float_tiff_in_0_to_1_is_scaled_to_0_to_255(tmp_path: Path) -> None:
    rgb = _rgb()
    image = read_image(_save_cv2(tmp_path / "float.tif", rgb.astype(np.float32) / 255))

    _assert_rgb8(image, 24, 32)
    assert np.abs(image.astype(int) - rgb).max() <= 1


def test_float_tiff_with_arbitrary_range_is_stretched(tmp_path: Path) -> None:
    raw = np.linspace(-1000.0, 3000.0, 24 * 32, dtype=np.float32).reshape(24, 32)
    image = read_image(_save_cv2(tmp_path / "raw.tif", raw))

    assert image.min() == 0 and image.max() == 255


def test_exif_rotated_photo_comes_upright(tmp_path: Path) -> None:
    photo = Image.fromarray(_rgb(20, 40))  # 40 wide, 20 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = _save_pil(tmp_path / "phone.jpg", photo, exif=exif, quality=95)

    image = read_image(path)

    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert image.shape == upright.shape == (40, 20, 3)
    assert np.abs(image.astype(int) - upright).mean() < 2


def test_bytes_and_paths_give_the_same_pixels(tmp_path: Path) -> None:
    path = _save_pil(tmp_path / "a.png", Image.fromarray(_rgb()))
    np.testing.assert_array_equal(read_image(path.read_bytes(), name="a.png"), read_image(str(path)))


def test_large_but_allowed_image_reads(tmp_path: Path) -> None:
    path = _save_pil(tmp_path / "wide.png", Image.new("RGB", (4000, 3000), (10, 20, 30)))
    image = read_image(path)
    _assert_rgb8(image, 3000, 4000)
    assert tuple(image[-1, -1]) == (10, 20, 30)


# ------------------------------------------------------------------------------------------ masks


def test_mask_nonzero_pixels_are_defect(tmp_path: Path) -> None:
    mask = np.zeros((16, 20), np.uint8)
    mask[4:8, 5:15] = 255
    result = read_mask(_save_pil(tmp_path / "m.png", Image.fromarray(mask)))

    assert result.dtype == np.bool_
    np.testing.assert_array_equal(result, mask > 0)


def test_mask_of_another_size_is_resized_nearest_and_stays_binary(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[:4, :4] = 255
    result = read_mask(_save_pil(tmp_path / "m.png", Image.fromarray(mask)), shape=(32, 16))

    assert result.shape == (32, 16) and result.dtype == np.bool_
    assert result[:16, :8].all() and not result[16:].any() and not result[:, 8:].any()


def test_colour_and_16bit_masks_count_any_nonzero_value(tmp_path: Path) -> None:
    colour = np.zeros((6, 6, 3), np.uint8)
    colour[1, 1] = (0, 0, 7)  # only blue
    assert read_mask(_save_pil(tmp_path / "c.png", Image.fromarray(colour))).sum() == 1

    ones = np.zeros((6, 6), np.uint16)
    ones[2:4, 2:4] = 1  # would vanish if scaled to 8 bit first
    assert read_mask(_save_cv2(tmp_path / "o.png", ones)).sum() == 4


def test_bad_mask_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "000_mask.png"
    bad.write_text("nope")
    with pytest.raises(ImageError, match="000_mask.png"):
        read_mask(bad)


# ------------------------------------------------------------------------------------------ folders


def test_list_images_finds_images_by_suffix_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.tiff", "d.Webp", "notes.txt", ".hidden.png", "._a.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.bmp").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "f.png").write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()

    flat = list_images(tmp_path)
    deep = list_images(tmp_path, recursive=True)

    assert [p.name for p in flat] == ["a.JPG", "b.png", "c.tiff", "d.Webp"]
    assert [p.relative_to(tmp_path).as_posix() for p in deep] == ["a.JPG", "b.png", "c.tiff", "d.Webp", "sub/e.bmp"]


def test_list_images_of_a_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="nowhere"):
        list_images(tmp_path / "nowhere")


def test_validate_images_splits_readable_from_broken_with_reasons(tmp_path: Path) -> None:
    ok = _save_pil(tmp_path / "ok.png", Image.fromarray(_rgb()))
    text = tmp_path / "text.png"
    text.write_text("hello")
    empty = tmp_path / "empty.jpg"
    empty.touch()

    valid, invalid = validate_images([ok, text, empty])

    assert valid == [ok]
    assert [p for p, _ in invalid] == [text, empty]
    assert all(p.name in reason for p, reason in invalid)


def test_supported_suffixes() -> None:
    assert set(IMAGE_SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def test_png_bytes_round_trip() -> None:
    rgb = _rgb()
    np.testing.assert_array_equal(read_image(to_png_bytes(rgb)), rgb)
    mask = np.eye(5, dtype=bool)
    np.testing.assert_array_equal(read_mask(to_png_bytes(mask)), mask)
