"""The test of the tests: a test that reads ../shared without being marked real_data fails where it is written."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from core.config import PROJECT_ROOT

TESTS = """
import os
import pytest
SHARED = os.environ["AW_SHARED_GUARD"]

def test_reads_the_shared_folder_unmarked():
    with open(os.path.join(SHARED, "data.txt")) as f:
        assert f.read() == "real"

def test_lists_the_shared_folder_unmarked():
    assert os.listdir(SHARED)

@pytest.mark.real_data
def test_reads_it_marked():
    with open(os.path.join(SHARED, "data.txt")) as f:
        assert f.read() == "real"

def test_reads_elsewhere(tmp_path):
    (tmp_path / "x").write_text("y")
    assert (tmp_path / "x").read_text() == "y"
"""


def test_a_test_reading_the_shared_folder_without_the_real_data_mark_fails(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("real")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_sample.py").write_text(textwrap.dedent(TESTS))
    env = {"PATH": "/usr/bin:/bin", "AW_SHARED_GUARD": str(shared), "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.shared_guard",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(suite),
            str(suite),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "2 failed, 2 passed" in out, out
    assert "test_reads_the_shared_folder_unmarked" in out and "without @pytest.mark.real_data" in out
    assert "test_lists_the_shared_folder_unmarked" in out
