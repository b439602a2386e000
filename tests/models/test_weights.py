"""Weights: imported with a checksum; missing weights offline get a message naming the file and place (a run queued
without them: tests/jobs/test_queue.py; EfficientAD's teacher: tests/models/test_efficientad.py)."""

from __future__ import annotations

import pytest

from core import models
from core.errors import WeightsError, WorkbenchError
from core.models import weights
from tests.conftest import SHARED_LITE0


def test_a_missing_backbone_offline_says_which_folder_is_needed(artifacts):
    with pytest.raises(WeightsError, match=r"wide_resnet50_2.*config.json \+ model.safetensors"):
        weights.resolve_backbone("wide_resnet50_2")


def test_the_bundled_lite0_weights_are_unpacked_with_the_known_checksum(artifacts):
    assert weights.resolve_backbone("tf_efficientnet_lite0").startswith("local-dir:")
    assert weights.read_manifest()["tf_efficientnet_lite0"]["sha256"]["model.safetensors"] == (
        "2b4a5f7e9a1870e2c41efd811c5b04f7e5843b32900a338e3f181204a324f9c6"
    )  # = ../shared's remapped copy
    assert weights.default_backbone() == "tf_efficientnet_lite0"


@pytest.mark.parametrize(
    "name, sha256",
    [
        ("tf_efficientnet_lite1", "2e16a0178c2eeacbdf7dedfa3ef47c7100de6e4c4dcb777fd04c9369e51e0f74"),
        ("tf_efficientnet_lite2", "57fa2d5d0a66461c418d8710597621b83b62e7f1201624dd9b949ebd03382bf0"),
    ],
)
def test_lite1_and_lite2_ship_like_lite0_and_build_every_backbone_model(artifacts, name, sha256):
    assert weights.backbone_status(name) == "local"  # offline, from the pinned package
    assert weights.read_manifest()[name]["sha256"]["model.safetensors"] == sha256
    for model in ("patchcore", "padim"):
        module = models.create_model(model, models.resolve_params(model, {"backbone": name}))
        assert module is not None


def test_unknown_models_and_bad_parameters_are_refused(artifacts):
    with pytest.raises(WorkbenchError, match="Unknown model 'padim2'"):
        models.get_entry("padim2")
    with pytest.raises(WorkbenchError, match="coreset_sampling_ratio"):
        models.resolve_params("patchcore", {"coreset_sampling_ratio": 5})
    with pytest.raises(WorkbenchError, match="Unknown parameter"):
        models.resolve_params("patchcore", {"coreset": 0.1})


@pytest.mark.real_data("weights")
def test_importing_a_timm_folder_records_its_sha256_and_makes_it_usable(artifacts):
    imported = weights.import_weights(SHARED_LITE0)
    assert imported.known["model.safetensors"].startswith("timm tf_efficientnet_lite0")
    assert weights.resolve_backbone("tf_efficientnet_lite0").startswith("local-dir:")
    assert weights.read_manifest()["tf_efficientnet_lite0"]["sha256"]["model.safetensors"] == (
        "2b4a5f7e9a1870e2c41efd811c5b04f7e5843b32900a338e3f181204a324f9c6"
    )
    assert weights.default_backbone() == "tf_efficientnet_lite0"


def test_importing_something_that_is_not_weights_is_refused(artifacts, tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(WeightsError, match="not a weights file"):
        weights.import_weights(tmp_path / "notes.txt")
    with pytest.raises(WeightsError, match="not a timm weights folder"):
        weights.import_weights(tmp_path)


def test_a_machine_that_cannot_reach_the_hub_counts_as_offline_unless_told_otherwise(monkeypatch):
    from core import config

    monkeypatch.delenv("AW_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(config, "hub_reachable", lambda *a, **k: False)
    assert config.settings().offline
    monkeypatch.setattr(config, "hub_reachable", lambda *a, **k: True)
    assert not config.settings().offline
    monkeypatch.setenv("AW_OFFLINE", "0")  # said to be online: downloads are tried whatever the probe says
    monkeypatch.setattr(config, "hub_reachable", lambda *a, **k: False)
    assert not config.settings().offline
