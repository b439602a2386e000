"""Fixtures shared by the view tests (comparison, charts, report)."""

from __future__ import annotations

import pytest

from core.store.runs import RunRegistry


@pytest.fixture
def demo(demo_runs):
    """(registry, runs): the session's finished demo runs (PatchCore, then EfficientAD with an untrained teacher)."""
    registry = RunRegistry()
    return registry, [registry.get(i) for i in demo_runs]
