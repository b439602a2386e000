"""The command line as a whole (core.cli): every option says what it does, help shows what a user types, the
installed `aw` works from any folder, and an unexpected error is one line naming the incident (no traceback).

Each command group's own tests: test_runs.py, test_serve.py, test_data.py, test_feedback.py, test_trust.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli


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
