"""The bad-input corpus: 46 awkward files, zips and folders, each fed to the command a user would type, each with the
verdict or message it must get. What must be true of every case: a clear line (never a traceback), the right exit
code, and for a refused import nothing left under the dataset's name (nor any hidden half-import).

Files go through ``aw predict RUN FILE`` on the session's PatchCore demo run; folders and zips through ``aw data
import NAME``. Each case builds its input from scratch in a temporary folder (nothing comes from this repo's data).
"""

from __future__ import annotations

import csv as csv_module
import json
import shutil
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.cli import main
from core.data import datasets
from core.data.demo_data import make_demo_image

# ---------------------------------------------------------------------------------------------- builders


def good(seed: int = 0, size: int = 64) -> np.ndarray:
    return make_demo_image("good", seed=seed, size=size)[0]


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", rgb[..., ::-1] if rgb.ndim == 3 else rgb)[1].tobytes()


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()


def write(path: Path, data: bytes | np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(data) if isinstance(data, np.ndarray) else data)
    return path


def png_with_header(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims ``width`` x ``height`` but whose data holds 10 bytes (a lying header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(10))) + chunk(b"IEND", b"")


def normals(folder: Path, n: int = 6, size: int = 64) -> Path:
    for i in range(n):
        write(folder / f"ok_{i}.png", good(i, size))
    return folder


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def normal_zip_files(n: int = 6) -> dict[str, bytes]:
    return {f"normal/ok_{i}.png": png(good(i)) for i in range(n)}


# ---------------------------------------------------------------------------------------------- files → aw predict


@dataclass
class FileCase:
    name: str
    build: Callable[[Path], Path]  # returns the file to score
    ok: bool  # a verdict (True) or a refusal (False)
    says: str = ""  # what the line about it must contain


def _symlink_loop(tmp: Path) -> Path:
    (tmp / "a.png").symlink_to(tmp / "b.png")
    (tmp / "b.png").symlink_to(tmp / "a.png")
    return tmp / "a.png"


def _dangling(tmp: Path) -> Path:
    (tmp / "moved.png").symlink_to(tmp / "gone" / "moved.png")
    return tmp / "moved.png"


def _exif_rotated(tmp: Path) -> Path:
    img = Image.fromarray(good(3))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    path = tmp / "phone.jpg"
    img.save(path, exif=exif)
    return path


def _pil(tmp: Path, name: str, mode: str, **save) -> Path:
    img = Image.fromarray(good(4)).convert(mode)
    path = tmp / name
    img.save(path, **save)
    return path


def _png16(tmp: Path) -> Path:
    path = tmp / "deep.png"
    cv2.imwrite(str(path), (good(5)[..., 0].astype(np.uint16) * 257))
    return path


FILE_CASES = [
    FileCase(
        "text file named .png",
        lambda t: write(t / "notes.png", b"shift report, not an image"),
        False,
        "not a readable image",
    ),
    FileCase("empty file", lambda t: write(t / "empty.png", b""), False, "is empty"),
    FileCase("truncated PNG", lambda t: write(t / "cut.png", png(good())[:300]), False, "cut.png"),
    FileCase("truncated JPEG", lambda t: write(t / "cut.jpg", jpeg(good())[:200]), False, "cut.jpg"),
    FileCase(
        "PNG header claiming 100k x 100k",
        lambda t: write(t / "huge.png", png_with_header(100_000, 100_000)),
        False,
        "megapixels",
    ),
    FileCase("PNG header with a zero size", lambda t: write(t / "zero.png", png_with_header(0, 0)), False, "zero.png"),
    FileCase("JPEG named .png (lying extension)", lambda t: write(t / "really_jpeg.png", jpeg(good())), True),
    FileCase("PNG named .jpg (lying extension)", lambda t: write(t / "really_png.jpg", png(good())), True),
    FileCase("a folder, not a file", lambda t: (t / "folder.png").mkdir() or t / "folder.png", False, "folder"),
    FileCase("a file that does not exist", lambda t: t / "ghost.png", False, "not found"),
    FileCase("a symlink loop", _symlink_loop, False, "a.png"),
    FileCase("a dangling symlink", _dangling, False, "moved.png"),
    FileCase("16-bit grey PNG", _png16, True),
    FileCase("RGBA PNG", lambda t: _pil(t, "alpha.png", "RGBA"), True),
    FileCase("palette GIF", lambda t: _pil(t, "palette.gif", "P"), True),
    FileCase("EXIF-rotated phone JPEG", _exif_rotated, True),
    FileCase("1x1 pixel image", lambda t: write(t / "dot.png", np.zeros((1, 1, 3), np.uint8)), True),
    FileCase("name with HTML markup", lambda t: write(t / "<img src=x onerror=alert(1)>.png", good(6)), True),
    FileCase("name that is a spreadsheet formula", lambda t: write(t / '=HYPERLINK("http:x","y").png', good(7)), True),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.name)
def test_a_file_gets_a_verdict_or_one_clear_line(demo_runs, tmp_path, capsys, monkeypatch, case):
    path = case.build(tmp_path)
    csv = tmp_path / "out" / "scores.csv"
    csv.parent.mkdir()
    monkeypatch.chdir(tmp_path)  # the file by its bare name, as typed in its folder: the CSV's first cell is the name
    rc = main(["predict", demo_runs[0], path.name, "--csv", str(csv)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    assert rc == (0 if case.ok else 1), text
    row = csv.read_text(encoding="utf-8").splitlines()[1]
    if case.ok:
        assert ("anomalous" in row or "normal" in row) and "ERROR" not in row
    else:
        assert "ERROR" in row and case.says in text, text
    if path.name.startswith("="):
        cell = next(csv_module.reader([row]))[0]
        assert cell == "'" + path.name  # a spreadsheet opens the export as text, not as a formula


# ---------------------------------------------------------------------------------------------- folders and zips


@dataclass
class ImportCase:
    name: str
    build: Callable[[Path], list[str]]  # returns the `aw data import NAME ...` arguments after NAME
    ok: bool
    says: str = ""


def _folder(tmp: Path, abnormal: dict[str, bytes] | None = None, masks: dict[str, bytes] | None = None) -> list[str]:
    args = ["--normal", str(normals(tmp / "normal"))]
    if abnormal is not None:
        for rel, data in abnormal.items():
            write(tmp / "abnormal" / rel, data)
        args += ["--abnormal", str(tmp / "abnormal")]
    if masks is not None:
        for rel, data in masks.items():
            write(tmp / "masks" / rel, data)
        args += ["--masks", str(tmp / "masks")]
    return args


def _mask(size: int = 64, rgb: bool = False) -> bytes:
    m = np.zeros((size, size), np.uint8)
    m[size // 4 : size // 2, size // 4 : size // 2] = 255
    return png(np.dstack([m, m // 2, m]) if rgb else m)


def _defect(seed: int = 1) -> bytes:
    return png(make_demo_image("scratch", seed=seed, size=64)[0])


def _crc_zip(tmp: Path) -> list[str]:
    path = make_zip(tmp / "damaged.zip", normal_zip_files())
    raw = bytearray(path.read_bytes())
    # Flip one byte of the first member's data: its header still promises the old CRC-32.
    offset = 30 + len("normal/ok_0.png") + 40
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    return ["--zip", str(path)]


def _lying_size_zip(tmp: Path) -> list[str]:
    path = make_zip(tmp / "lying.zip", normal_zip_files())
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")  # the last member's central-directory entry: claim 1 byte uncompressed
    raw[central + 24 : central + 28] = struct.pack("<I", 1)
    path.write_bytes(bytes(raw))
    return ["--zip", str(path)]


def _truncated_zip(tmp: Path) -> list[str]:
    path = make_zip(tmp / "half.zip", normal_zip_files())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return ["--zip", str(path)]


def _symlink_member_zip(tmp: Path) -> list[str]:
    import stat

    path = tmp / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in normal_zip_files().items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo("normal/passwd.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return ["--zip", str(path)]


def _bomb_zip(tmp: Path) -> list[str]:
    path = tmp / "bomb.zip"
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("normal/huge.bmp", "w", force_zip64=True) as fh,
    ):
        for _ in range(64):
            fh.write(bytes(1 << 24))  # 1 GiB of zeros, ~1 MB packed
    return ["--zip", str(path)]


def _loop_folder(tmp: Path) -> list[str]:
    args = _folder(tmp)
    (tmp / "normal" / "again").symlink_to(tmp / "normal", target_is_directory=True)  # a loop back to itself
    return args


def _dangling_in_folder(tmp: Path) -> list[str]:
    args = _folder(tmp)
    (tmp / "normal" / "gone.png").symlink_to(tmp / "nowhere" / "gone.png")
    return args


def _tiny_files(tmp: Path) -> list[str]:
    folder = tmp / "tiny"
    folder.mkdir()
    tile = png(cv2.resize(good(0, 32), (8, 8), interpolation=cv2.INTER_AREA))
    for i in range(3000):
        (folder / f"t{i:04d}.png").write_bytes(tile)
    return ["--normal", str(folder)]


def _mixed_sizes(tmp: Path) -> list[str]:
    folder = tmp / "mixed"
    for i, size in enumerate((48, 64, 96, 128, 200, 64)):
        write(folder / f"m{i}.png", good(i, size) if i % 2 else good(i, size)[..., 0])
    return ["--normal", str(folder)]


def _weird_names(tmp: Path) -> list[str]:
    return _folder(tmp, {"=cmd|' /C calc'!A0/<img src=x onerror=alert(1)>.png": _defect()})


IMPORT_CASES = [
    ImportCase("normal folder missing", lambda t: ["--normal", str(t / "nope")], False, "nope"),
    ImportCase("normal folder empty", lambda t: (t / "e").mkdir() or ["--normal", str(t / "e")], False, "no images"),
    ImportCase(
        "normal folder of unreadable files only",
        lambda t: [write(t / "bad" / f"b{i}.png", b"junk") for i in range(3)] and ["--normal", str(t / "bad")],
        False,
        "None of the normal images could be read",
    ),
    ImportCase(
        "one unreadable file among good ones",
        lambda t: write(t / "normal" / "broken.png", b"junk") and _folder(t),
        True,
        "broken.png",
    ),
    ImportCase(
        "masks that pair with no image",
        lambda t: _folder(t, {"scratch/a1.png": _defect()}, {"scratch/zz_1.png": _mask()}),
        False,
        "mask",
    ),
    ImportCase(
        "duplicated names across defect types, masks for one type",
        lambda t: _folder(t, {"scratch/x1.png": _defect(1), "dent/x1.png": _defect(2)}, {"scratch/x1.png": _mask()}),
        True,
        "no mask",
    ),
    ImportCase(
        "flat masks folder matching images of two types",
        lambda t: _folder(t, {"scratch/x1.png": _defect(1), "dent/x1.png": _defect(2)}, {"x1_mask.png": _mask()}),
        True,
        "could not be told which mask is theirs",
    ),
    ImportCase(
        "mask of another size",
        lambda t: _folder(t, {"scratch/s1.png": _defect()}, {"scratch/s1.png": _mask(32)}),
        True,
        "resized",
    ),
    ImportCase(
        "RGB mask",
        lambda t: _folder(t, {"scratch/s1.png": _defect()}, {"scratch/s1.png": _mask(rgb=True)}),
        True,
        "colour",
    ),
    ImportCase("abnormal folder without masks", lambda t: _folder(t, {"scratch/s1.png": _defect()}), True, "no mask"),
    ImportCase("symlink loop inside the folder", _loop_folder, True),
    ImportCase("dangling symlink inside the folder", _dangling_in_folder, True, "gone.png"),
    ImportCase("3,000 tiny files", _tiny_files, True),
    ImportCase("mixed sizes and channel counts", _mixed_sizes, True, "sizes"),
    ImportCase("names with markup and a spreadsheet formula", _weird_names, True),
    ImportCase("zip with a CRC error (damaged copy)", _crc_zip, False, "damaged"),
    ImportCase("zip whose directory lies about a size", _lying_size_zip, False, "zip"),
    ImportCase("zip cut in half", _truncated_zip, False, "zip"),
    ImportCase(
        "file that is not a zip", lambda t: ["--zip", str(write(t / "x.zip", b"PK? no"))], False, "not a readable zip"
    ),
    ImportCase("empty zip", lambda t: ["--zip", str(make_zip(t / "empty.zip", {}))], False, "empty"),
    ImportCase(
        "zip of non-images", lambda t: ["--zip", str(make_zip(t / "txt.zip", {"normal/a.txt": b"hi"}))], False, "normal"
    ),
    ImportCase(
        "zip with a path-traversal member",
        lambda t: ["--zip", str(make_zip(t / "slip.zip", {**normal_zip_files(), "../evil.png": png(good())}))],
        False,
        "unsafe",
    ),
    ImportCase(
        "zip with an absolute member path",
        lambda t: ["--zip", str(make_zip(t / "abs.zip", {**normal_zip_files(), "/tmp/evil.png": png(good())}))],
        False,
        "unsafe",
    ),
    ImportCase("zip with a symlink member", _symlink_member_zip, False, "symbolic link"),
    ImportCase("zip bomb", _bomb_zip, False, "zip bomb"),
    ImportCase(
        "zip in neither layout",
        lambda t: ["--zip", str(make_zip(t / "odd.zip", {"photos/a.png": png(good())}))],
        False,
        "MVTec AD's layout",
    ),
    ImportCase(
        "zip in MVTec layout with an empty train/good",
        lambda t: ["--zip", str(make_zip(t / "mv.zip", {"train/good/": b"", "test/good/a.png": png(good())}))],
        False,
        "train/good",
    ),
]


def _leftovers(root: Path, name: str) -> list[str]:
    hidden = [p.name for p in root.iterdir() if p.name.startswith(".")] if root.is_dir() else []
    uploads = root.parent / "uploads"
    hidden += [p.name for p in uploads.iterdir()] if uploads.is_dir() else []
    return hidden + ([name] if (root / name).exists() else [])


@pytest.mark.parametrize("case", IMPORT_CASES, ids=lambda c: c.name)
def test_a_folder_or_zip_is_imported_with_its_notes_or_refused_leaving_nothing(artifacts, tmp_path, capsys, case):
    args = case.build(tmp_path)
    t0 = time.perf_counter()
    rc = main(["data", "import", "line", *args])
    seconds = time.perf_counter() - t0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    assert rc == (0 if case.ok else 2), text
    assert case.says.lower() in text.lower(), text
    root = datasets.custom_root()
    if case.ok:
        assert "line" in datasets.list_custom()
        assert not [n for n in _leftovers(root, "line") if n != "line"]
    else:
        assert _leftovers(root, "line") == [], "a refused import left files behind"
    assert seconds < 120, f"{case.name}: {seconds:.0f} s"


def test_the_corpus_has_at_least_forty_distinct_cases():
    names = [c.name for c in FILE_CASES] + [c.name for c in IMPORT_CASES]
    assert len(set(names)) == len(names) >= 40


def test_names_with_markup_are_escaped_in_the_html_report(demo_runs_copy, tmp_path):
    """A run whose test images are named like markup: the HTML report shows the names as text, never as tags.
    (The renamed copies go to this test's own folder: the session's demo test set must stay as it is.)"""
    from core.store.runs import RunRegistry
    from core.views.report import build_html_report

    registry = RunRegistry()
    run = registry.get(demo_runs_copy[0])
    records_path = registry.run_dir(run.id) / "records.json"
    records = json.loads(records_path.read_text())
    for i, rec in enumerate(records):
        evil = tmp_path / f"<img src=x onerror=alert({i})>.png"
        shutil.copy(rec["path"], evil)
        rec["path"] = str(evil)
    records_path.write_text(json.dumps(records))
    html = build_html_report([run], registry, heatmaps_per_run=2)
    assert "<img src=x onerror" not in html and "&lt;img src=x onerror=alert(" in html
