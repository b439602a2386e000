"""Own images, end to end, as a quality engineer brings them: files that live outside artifacts/ (PNG, JPEG,
symlinked or on another file system), imported from folders or a zip, with or without masks or defects; each
trains PatchCore and reaches the stored records, the Training page, the Heatmap viewer and Similar cases.

Runs are trained once per module (tiny synthetic images, small settings: seconds each) and shared by the tests.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT, settings
from core.data import datasets, importing
from core.data.demo_data import make_demo_image
from core.jobs import queue as jobs
from core.store.artifacts import RunArtifacts
from core.store.runs import DONE, RunRegistry
from tests.conftest import FAST_PATCHCORE, _offline_env

OWN_PATCHCORE = {**FAST_PATCHCORE, "image_size": 96}


def _write(path: Path, image: np.ndarray, ext: str = ".png") -> Path:
    path = path.with_suffix(ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)
    return path


def make_line(root: Path, masks: bool = True, defects: bool = True, n_normal: int = 12) -> Path:
    """A user's folder: normal/ (every third image a JPEG), abnormal/<type>/, masks/<type>/<name>_mask.png."""
    for i in range(n_normal):
        img, _ = make_demo_image("good", seed=100 + i, size=96)
        _write(root / "normal" / f"ok_{i:02d}", img, ".jpg" if i % 3 == 0 else ".png")
    if defects:
        for kind in ("scratch", "spot"):
            for i in range(3):
                img, mask = make_demo_image(kind, seed=200 + i, size=96)
                _write(root / "abnormal" / kind / f"{kind}_{i}", img)
                if masks:
                    _write(root / "masks" / kind / f"{kind}_{i}_mask", mask.astype(np.uint8) * 255)
    return root


def train(spec) -> str:
    run = jobs.submit("patchcore", spec, OWN_PATCHCORE, start=False)
    status = jobs.execute_claimed(run.id)
    assert status == DONE, RunRegistry().get(run.id).error
    return run.id


@pytest.fixture(scope="module")
def own_runs(tmp_path_factory):
    """Artifacts with one finished run per way in: {'folders', 'zip', 'no_masks', 'normal_only', 'symlinks'}."""
    base = tmp_path_factory.mktemp("own_e2e")
    root = base / "artifacts"
    user = base / "user_files"  # outside artifacts/, as on a user's disk
    other_fs = Path("/dev/shm") / f"aw-own-{os.getpid()}"  # another file system where there is one
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _offline_env(root).items():
            mp.setenv(key, value)
        try:
            line = make_line(user / "line3")
            importing.import_folder("line3", line / "normal", line / "abnormal", line / "masks")
            runs["folders"] = train(datasets.custom("line3"))

            zipped = make_line(user / "zipped_src" / "line4")
            archive = user / "line4.zip"
            with zipfile.ZipFile(archive, "w") as zf:
                for f in zipped.rglob("*"):
                    if f.is_file():
                        zf.write(f, f.relative_to(zipped.parent))
            importing.import_zip("line4", archive)
            runs["zip"] = train(datasets.custom("line4"))

            bare_root = other_fs if Path("/dev/shm").is_dir() else user
            bare = make_line(bare_root / "line5", masks=False)
            importing.import_folder("line5", bare / "normal", bare / "abnormal")
            runs["no_masks"] = train(datasets.custom("line5"))

            good_only = make_line(user / "line6", defects=False)
            importing.import_folder("line6", good_only / "normal")
            runs["normal_only"] = train(datasets.custom("line6"))

            # A folder of symlinks, as a NAS mount or a data-management tool leaves it.
            links = user / "line7"
            for f in (line / "normal").iterdir():
                (links / "normal").mkdir(parents=True, exist_ok=True)
                (links / "normal" / f.name).symlink_to(f)
            importing.import_folder("line7", links / "normal", line / "abnormal", line / "masks")
            runs["symlinks"] = train(datasets.custom("line7"))
            yield root, runs, user
        finally:
            shutil.rmtree(other_fs, ignore_errors=True)


@pytest.fixture
def own(own_runs, monkeypatch):
    root, runs, user = own_runs
    for key, value in _offline_env(root).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")
    return runs


def records(run_id: str):
    return RunArtifacts(settings().run_dir(run_id)).records


# ---- the engine: records and metrics ---------------------------------------------------------------------


@pytest.mark.parametrize("way", ["folders", "zip", "symlinks"])
def test_each_way_in_trains_and_evaluates_with_defect_types_and_masks(own, way):
    run = RunRegistry().get(own[way])
    assert run.metrics["image_auroc"] >= 0.9 and run.metrics["pixel_auroc"] >= 0.9
    assert set(run.metrics["per_defect"]) == {"scratch", "spot"}
    recs = records(run.id)
    assert len(recs) == 2 + 6  # 20 % of 12 normals held out, 3 + 3 defects
    assert recs[recs.label == 1].mask_path.notna().all()
    assert run.retrieval, "the run was indexed for similarity search"


def test_records_name_the_users_own_files(own):
    recs = records(own["folders"])
    assert "scratch_1.png" in {Path(p).name for p in recs.path}
    assert all(str(s).endswith((".png", ".jpg")) for s in recs.source)
    zipped = records(own["zip"])
    assert all(str(s).startswith("line4.zip:line4/") for s in zipped.source)


def test_a_set_without_masks_has_image_metrics_and_no_pixel_metrics(own):
    m = RunRegistry().get(own["no_masks"]).metrics
    assert m["image_auroc"] >= 0.9
    assert m["pixel_auroc"] is None and m["aupro"] is None and m["pixel_f1"] is None
    assert any("pixel AUROC, pixel F1 and AUPRO are not available" in n for n in m["notes"])


def test_a_set_without_abnormal_images_trains_and_scores_held_out_normals(own):
    run = RunRegistry().get(own["normal_only"])
    assert run.metrics["image_auroc"] is None and run.metrics["n_anomalous"] == 0
    assert "held-out normal" in run.metrics["threshold_source"]
    recs = records(run.id)
    assert len(recs) == 2 and (recs.pred_label == 0).all()  # no false alarm on the normals it was set on
    info = datasets.import_info(datasets.custom("line6"))
    assert any("No abnormal images" in n for n in info["notes"])


def test_uploads_on_an_own_data_run_get_a_verdict(own):
    from core.engine.inference import LoadedModel

    model = LoadedModel(settings().run_dir(own["folders"]))
    clean, _ = make_demo_image("good", seed=999, size=96)
    broken, _ = make_demo_image("spot", seed=999, size=96)
    clean_pred, broken_pred = model.predict([clean, broken])
    assert broken_pred.score > clean_pred.score and broken_pred.is_anomalous is True


def test_a_run_whose_images_were_damaged_after_import_fails_with_a_message_not_a_traceback(own, tmp_path):
    spec = datasets.custom("line3")
    victim = sorted((spec.path / "train" / "good").glob("*.png"))[0]
    replacement = tmp_path / "damaged.png"
    replacement.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    before = RunRegistry().list()
    original = victim.resolve().read_bytes() if not victim.is_symlink() else None
    victim.unlink()  # the hard link: the user's file itself is untouched
    shutil.copy(replacement, victim)
    try:
        run = jobs.submit("patchcore", spec, OWN_PATCHCORE, start=False)
        assert jobs.execute_claimed(run.id) == "failed"
        failed = RunRegistry().get(run.id)
        assert "could not be read" in failed.error and "import the dataset again" in failed.error
        assert "Traceback" not in failed.error
        log = RunArtifacts(settings().run_dir(run.id)).log_path.read_text()
        assert "Traceback" in log
        assert {r.id for r in before} <= {r.id for r in RunRegistry().list()}  # nothing else lost
        assert all(RunRegistry().get(r.id).status == r.status for r in before)
        from tests.cli.test_cli import cli

        shown = cli("show", run.id)
        assert "error: An image could not be read" in shown.stdout and "Traceback" not in shown.stdout + shown.stderr
    finally:
        victim.unlink()
        if original is not None:
            victim.write_bytes(original)


def test_the_cli_imports_a_folder_and_refuses_to_overwrite_it(own, tmp_path):
    from tests.cli.test_cli import cli

    line = make_line(tmp_path / "cli_line", n_normal=6)
    result = cli(
        "data",
        "import",
        "cli_line",
        "--normal",
        str(line / "normal"),
        "--abnormal",
        str(line / "abnormal"),
        "--masks",
        str(line / "masks"),
    )
    assert result.returncode == 0, result.stderr
    assert "Imported 'cli_line'" in result.stdout and "folder:cli_line" in result.stdout
    again = cli("data", "import", "cli_line", "--normal", str(line / "normal"))
    assert again.returncode == 2 and "already imported" in again.stderr and "Traceback" not in again.stderr


# ---- the pages -------------------------------------------------------------------------------------------


def _open(page: str, key: str | None = None, run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=240).run()
    at.switch_page(page).run()
    if key and run_id:
        at.selectbox(key=key).set_value(run_id).run()
    assert not at.exception, at.exception
    return at


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def test_the_training_page_shows_own_runs_with_pixel_metrics_marked_not_available(own):
    at = _open("pages/training.py")
    at.selectbox(key="history_run").set_value(own["no_masks"]).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["pixel AUROC"] == "not available" and metrics["AUPRO"] == "not available"
    assert metrics["image AUROC"] not in ("not available", "–")
    assert any("not available" in c for c in _texts(at.caption))


@pytest.mark.parametrize("way", ["folders", "no_masks", "normal_only"])
def test_the_heatmap_viewer_shows_the_own_runs_images_by_their_names(own, way):
    at = _open("pages/heatmaps.py", "hm_run", own[way])
    assert not at.error
    captions = " ".join(_texts(at.tabs[0].caption))
    names = {Path(p).name for p in records(own[way]).path}
    assert any(name in captions for name in names)
    assert len([c for c in _texts(at.tabs[0].caption) if c.startswith("Truth:")]) == len(names)


def test_similar_cases_finds_neighbours_for_an_own_runs_test_image(own):
    at = _open("pages/similarity.py", "sim_run", own["folders"])
    assert not at.error, [e.value for e in at.error]
    hits = [m for m in _texts(at.markdown) if m.startswith("**#")]
    assert hits, "neighbour cards are shown"


def test_the_cli_trains_an_own_dataset_and_states_the_expected_time_and_memory_first(own):
    from tests.cli.test_cli import cli

    params = [a for k, v in OWN_PATCHCORE.items() for a in ("--param", f"{k}={v}")]
    result = cli("train", "--dataset", "folder:line6", *params)
    assert result.returncode == 0, result.stderr[-2000:]
    first = result.stdout.splitlines()[0]
    assert first.startswith("Expected: about") and "peak memory about" in first
    assert "[done]" in result.stdout and "threshold_source" not in result.stderr


def test_the_launch_form_estimates_time_and_memory_for_an_own_dataset(own):
    at = _open("pages/training.py")
    at.radio(key="source").set_value("Own dataset").run()
    at.selectbox(key="own_dataset").set_value("line3").run()
    assert not at.exception, at.exception
    estimates = [c for c in _texts(at.caption) if "Expected: about" in c]
    assert estimates and "PatchCore on Own images / line3" in estimates[0] and "GB" in estimates[0]
    assert any("train normal: 10" in c for c in _texts(at.caption))  # what the import found
