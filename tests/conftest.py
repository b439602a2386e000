"""Shared fixtures: every test gets its own artifacts folder, so nothing touches the user's runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"
SHARED_GRID = SHARED / "datasets" / "mvtec_ad" / "grid"
SHARED_LITE0 = SHARED / "weights" / "tf_efficientnet_lite0"

needs_shared_grid = pytest.mark.skipif(
    not (SHARED_GRID / "train" / "good").is_dir(),
    reason=f"real MVTec AD grid not found at {SHARED_GRID} (only on machines with ../shared)",
)
needs_shared_weights = pytest.mark.skipif(
    not (SHARED_LITE0 / "model.safetensors").is_file(),
    reason=f"local EfficientNet-Lite0 weights not found at {SHARED_LITE0} (only on machines with ../shared)",
)


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh artifacts folder, offline, with no weights unless a test imports some."""
    root = tmp_path / "artifacts"
    root.mkdir()
    monkeypatch.setenv("AW_ARTIFACTS", str(root))
    monkeypatch.setenv("AW_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AW_EXTRA_WEIGHTS_DIRS", "")
    monkeypatch.delenv("AW_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("AW_QDRANT_URL", raising=False)
    return root
