"""Exporting a run to OpenVINO (core.engine.export): the pre-processing recorded beside an export rebuilds exactly,
an export is used only while it is valid, complete and of the run's current checkpoint, and a run never exported is
scored with PyTorch. The exports themselves are checked against stock anomalib in tests/engine/test_inference.py."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.transforms.v2 import CenterCrop, Compose, Normalize, RandomHorizontalFlip, Resize

from core.engine.export import (
    ExportError,
    build_transform,
    describe_transform,
    export_info,
    export_openvino,
    export_status,
    fastest_model,
)
from core.engine.inference import LoadedModel
from core.models.weights import sha256_file
from core.store.artifacts import write_json
from core.store.runs import RunRegistry


def test_the_preprocessing_recorded_for_an_export_rebuilds_the_same_transform():
    transform = Compose(
        [
            Resize((96, 80), antialias=True),
            CenterCrop((64, 64)),
            Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    spec = json.loads(json.dumps(describe_transform(transform)))  # plain data, as export.json keeps it
    assert [step["op"] for step in spec] == ["resize", "center_crop", "normalize"]

    batch = torch.rand(2, 3, 120, 100)
    assert torch.equal(build_transform(spec)(batch), transform(batch))


def test_a_preprocessing_step_that_cannot_be_rebuilt_is_refused_by_name():
    with pytest.raises(ExportError, match="pre-processing contains RandomHorizontalFlip"):
        describe_transform(Compose([Resize(64), RandomHorizontalFlip()]))
    with pytest.raises(ExportError, match="Unknown pre-processing step 'blur' in export.json"):
        build_transform([{"op": "blur"}])


def test_an_export_is_used_only_while_it_is_valid_complete_and_of_the_current_checkpoint(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights as trained")
    folder = tmp_path / "openvino"
    folder.mkdir()
    fp32 = {"valid": True, "xml": "model_fp32.xml", "bin": "model_fp32.bin"}
    fp16 = {"valid": False, "xml": "model_fp16.xml", "bin": "model_fp16.bin"}
    write_json(
        folder / "export.json",
        {"checkpoint_sha256": sha256_file(tmp_path / "model.safetensors"), "precisions": {"fp32": fp32, "fp16": fp16}},
    )
    assert export_status(tmp_path) == (False, "export files are missing")

    (folder / "model_fp32.xml").write_text("<net/>")
    (folder / "model_fp32.bin").write_bytes(b"")
    assert export_status(tmp_path) == (True, "")
    assert export_status(tmp_path, "fp16") == (False, "the fp16 export failed validation")

    (tmp_path / "model.safetensors").write_bytes(b"weights re-trained after the export")
    assert export_status(tmp_path) == (False, "the export is older than the run's checkpoint")


def test_a_run_never_exported_is_scored_with_pytorch(demo_runs):
    run_dir = RunRegistry().run_dir(demo_runs[0])
    assert export_info(run_dir) is None and export_status(run_dir) == (False, "not exported")
    assert isinstance(fastest_model(run_dir), LoadedModel)


def test_an_unknown_precision_is_refused_before_anything_is_exported(artifacts, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
    with pytest.raises(ExportError, match=r"Unknown precision\(s\) \['int8'\]; choose from \('fp32', 'fp16'\)"):
        export_openvino(tmp_path, precisions=("fp32", "int8"))
    assert not (tmp_path / "openvino").exists()
