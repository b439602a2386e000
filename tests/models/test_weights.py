"""Weights: imported with a checksum; missing weights offline get a message naming the file and place (a run queued
without them: tests/jobs/test_queue.py; EfficientAD's teacher: tests/models/test_efficientad.py)."""

from __future__ import annotations

import pytest

from core import models
from core.errors import WeightsError, WorkbenchError
from core.models import weights
from tests.conftest import SHARED_LITE0, SHARED_WEIGHTS


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


def _torchvision_mobilenet_checkpoint(path):
    """A whole torchvision MobileNetV2 checkpoint (features + classifier), as torchvision's download cache holds one;
    its weights are random here (the real ImageNet file is in ../shared: the real-data test below)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    network = torchvision.models.mobilenet_v2().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return network


def test_torchvision_mobilenet_v2_weights_on_disk_become_a_timm_backbone_with_the_same_features(
    artifacts, tmp_path, monkeypatch
):
    import torch
    from anomalib.models.components import TimmFeatureExtractor

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert weights.backbone_status("mobilenetv2_100") == "missing"  # offline, nothing on disk
    network = _torchvision_mobilenet_checkpoint(
        tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    )

    backbone = weights.resolve_backbone("mobilenetv2_100")
    assert backbone.startswith("local-dir:") and weights.backbone_status("mobilenetv2_100") == "local"
    assert "mobilenet_v2-b0353104.pth" in weights.read_manifest()["mobilenetv2_100"]["source"]
    extractor = TimmFeatureExtractor(backbone, layers=["blocks.2", "blocks.4"], pre_trained=True).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        features = extractor(x)
        assert torch.equal(features["blocks.2"], network.features[:7](x))  # stride 8, 32 channels
        assert torch.equal(features["blocks.4"], network.features[:14](x))  # stride 16, 96 channels
    module = models.create_model("patchcore", models.resolve_params("patchcore", {"backbone": "mobilenetv2_100"}))
    assert module is not None


def test_a_file_named_like_mobilenet_v2_that_holds_other_weights_is_not_used(artifacts, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights_dir = artifacts / "weights"
    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"conv.weight": torch.zeros(3, 3)}, weights_dir / "mobilenet_v2_mine.pth")
    (weights_dir / "mobilenet_v2_text.pth").write_text("not a checkpoint")
    assert weights.backbone_status("mobilenetv2_100") == "missing"
    with pytest.raises(WeightsError, match="mobilenetv2_100"):
        weights.resolve_backbone("mobilenetv2_100")


@pytest.mark.real_data("weights")
def test_the_shared_imagenet_mobilenet_v2_imports_with_its_known_checksum_and_trains_patchcore(artifacts):
    imported = weights.import_weights(SHARED_WEIGHTS / "mobilenet_v2_features_imagenet_tvlayout.pth")
    assert imported.known["mobilenet_v2_features_imagenet_tvlayout.pth"].startswith("torchvision mobilenet_v2")
    assert weights.backbone_status("mobilenetv2_100") == "local"
    assert models.create_model("patchcore", models.resolve_params("patchcore", {"backbone": "mobilenetv2_100"}))
