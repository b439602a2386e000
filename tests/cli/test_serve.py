"""`aw predict`, `aw index`, `aw export`, `aw benchmark` (core.cli.serve): using a finished run. Scoring files
through `aw predict` is in test_runs.py (beside `aw runs` and `aw show`) and in tests/e2e/test_bad_inputs.py."""

from __future__ import annotations

from tests.conftest import cli


def test_pushing_the_index_to_an_unreachable_server_is_one_clear_line(artifacts):
    result = cli("index", "push", "http://127.0.0.1:9")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Qdrant server at http://127.0.0.1:9 failed" in result.stderr
    assert "Say where to push" in cli("index", "push").stderr
