"""`aw models`, `aw weights`, `aw data` (core.cli.data): what runs are made from. Importing own data through
`aw data import` is in tests/e2e (test_own_data.py, test_bad_inputs.py)."""

from __future__ import annotations

from tests.conftest import cli


def test_models_lists_every_registered_model_with_its_parameters(artifacts):
    from core import models

    out = cli("models").stdout
    for entry in models.REGISTRY.values():
        assert f"{entry.name}: {entry.label}" in out
    assert "| max_epochs " in out and "1e-04" in out  # EfficientAD's learning rate, not 0.000
