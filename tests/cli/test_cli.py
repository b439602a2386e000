"""The command line: readable tables, and one clear line (no traceback) for every user mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.config import PROJECT_ROOT
from core.data.demo_data import make_demo_image
from core.data.images import to_png_bytes


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


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


def test_pushing_the_index_to_an_unreachable_server_is_one_clear_line(artifacts):
    result = cli("index", "push", "http://127.0.0.1:9")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Qdrant server at http://127.0.0.1:9 failed" in result.stderr
    assert "Say where to push" in cli("index", "push").stderr


def test_models_lists_every_registered_model_with_its_parameters(artifacts):
    from core import models

    out = cli("models").stdout
    for entry in models.REGISTRY.values():
        assert f"{entry.name}: {entry.label}" in out
    assert "| max_epochs " in out and "1e-04" in out  # EfficientAD's learning rate, not 0.000


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from core.cli import HIDDEN_COMMANDS, build_parser

    silent = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name) and name not in HIDDEN_COMMANDS:
                        silent.append(f"{path} {name}")
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                silent.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "python -m core")
    assert silent == []


def test_help_lists_the_commands_a_user_types_and_hides_the_internal_ones():
    out = cli("--help").stdout
    assert "train" in out and "runs" in out and "predict" in out
    assert "SUPPRESS" not in out
    for hidden in ("worker", "execute"):
        assert f"\n    {hidden}" not in out and f"{{{hidden}" not in out and f",{hidden}" not in out


def test_the_aw_command_works_from_any_folder(artifacts, tmp_path):
    """`make setup` installs the project editable; its console command needs no checkout as working folder."""
    import pytest

    aw = Path(sys.executable).with_name("aw")
    if not aw.is_file():
        pytest.skip(f"the project is not installed in this environment ({aw} missing): run `make setup`")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [str(aw), "runs"], cwd=home, capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(home)}
    )
    assert done.returncode == 0, done.stderr
    assert "(none)" in done.stdout  # a fresh artifacts folder: no runs yet, and no traceback
    usage = subprocess.run([str(aw), "--help"], cwd=home, capture_output=True, text=True, timeout=120)
    assert usage.stdout.startswith("usage: aw ")


def test_an_unexpected_error_in_a_command_is_one_line_naming_the_incident(artifacts, monkeypatch, capsys):
    from core.cli import main
    from core.store import incidents
    from core.store.runs import RunRegistry

    def broken(self, *args, **kwargs):  # a fault no user input explains (a bug, a broken disk)
        raise RuntimeError("registry went away")

    monkeypatch.setattr(RunRegistry, "list", broken)
    assert main(["runs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Unexpected error in aw runs (RuntimeError: registry went away). Details: ")
    assert "Traceback" not in err and err.count("\n") == 1
    assert "registry went away" in incidents.read() and "Traceback" in incidents.read()
