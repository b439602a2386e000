"""`aw train`, `aw runs`, `aw show` (core.cli.runs): finished runs listed and shown, and a user's mistake in a run's
spec one clear line with exit code 2."""

from __future__ import annotations

from core.data.demo_data import make_demo_image
from core.data.images import to_png_bytes
from tests.conftest import cli


def test_an_unknown_category_is_one_clear_line_and_exit_code_2(artifacts):
    result = cli("train", "--dataset", "mvtec:tiles")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: Unknown MVTec AD category 'tiles'")
    assert "Traceback" not in result.stderr


def test_a_missing_run_and_a_bad_parameter_are_clear_errors(artifacts):
    assert "No run with id 'nope'" in cli("show", "nope").stderr
    bad = cli("train", "--dataset", "demo", "--param", "coreset_sampling_ratio=lots")
    assert bad.returncode == 2 and "must be a float" in bad.stderr and "Traceback" not in bad.stderr


def test_runs_show_and_predict_on_finished_runs(demo_runs, tmp_path):
    listing = cli("runs")
    assert demo_runs[0] in listing.stdout and "image AUROC" in listing.stdout

    shown = cli("show", demo_runs[1])
    assert "UNTRAINED" in shown.stdout and "image_auroc" in shown.stdout

    good, _ = make_demo_image("good", seed=5)
    (tmp_path / "part.png").write_bytes(to_png_bytes(good))
    (tmp_path / "notes.png").write_text("not an image")
    result = cli(
        "predict",
        demo_runs[0],
        str(tmp_path / "part.png"),
        str(tmp_path / "notes.png"),
        "--csv",
        str(tmp_path / "out.csv"),
    )
    assert result.returncode == 1  # one file failed, and says why; the other was scored
    assert "ERROR" in result.stdout and "part.png" in result.stdout and "Traceback" not in result.stderr
    assert (tmp_path / "out.csv").read_text().count("\n") == 3
