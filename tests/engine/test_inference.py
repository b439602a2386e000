"""The fast inference paths score exactly like stock anomalib (no timing assertions here).

Stock = anomalib 2.7's ``Engine.predict(model=<stock Patchcore with the run's weights>, data_path=<demo test>)``
with a forward hook on its torch model keeping the raw scores (Engine.predict itself returns normalised
ones, which are checked against our raw scores normalised by the same post-processor).
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from core import models
from core.config import PROJECT_ROOT, settings
from core.data import images
from core.data.images import read_image_fast
from core.engine.inference import LoadedModel, preprocess_images
from core.store.runs import RunRegistry
from tests.conftest import SMALL, _offline_env


def _speed_module():
    spec = importlib.util.spec_from_file_location("speed_bench", PROJECT_ROOT / "benchmarks" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a busy CI machine OpenMP's two spinning threads make these checks several
    times slower (results are the same)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _stock_outputs(demo_runs_root, out_dir: Path, index: int, model: str) -> dict:
    """One demo run, its test images, and stock Engine.predict's raw outputs on them."""
    root, ids = demo_runs_root
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _offline_env(root).items():  # as a user's machine: no ../shared (a module fixture runs first)
            mp.setenv(key, value)
        cfg = settings()
        run = RunRegistry(cfg).get(ids[index])
        run_dir = RunRegistry(cfg).run_dir(ids[index])
        records = json.loads((run_dir / "records.json").read_text())
        test_dir = Path(records[0]["path"]).parent.parent
        stock = _speed_module().run_stock(run_dir, test_dir, out_dir)
    paths = [r["path"] for r in records]
    raw = np.array([stock["by_path"][str(Path(p).resolve())][0] for p in paths])
    maps = np.stack([stock["by_path"][str(Path(p).resolve())][1] for p in paths])
    normalised = np.array([stock["normalised"][str(Path(p).resolve())] for p in paths])
    assert run.model == model and len(paths) == len(stock["by_path"]) >= 8
    return {
        "run_dir": run_dir,
        "paths": paths,
        "raw": raw,
        "maps": maps,
        "normalised": normalised,
        "post": stock["post_processor"],
    }


@pytest.fixture(scope="module")
def stock_demo(demo_runs_root, tmp_path_factory):
    """The demo PatchCore run, scored by stock anomalib."""
    return _stock_outputs(demo_runs_root, tmp_path_factory.mktemp("stock_results"), 0, "patchcore")


@pytest.fixture(scope="module")
def stock_efficientad(demo_runs_root, tmp_path_factory):
    """The demo EfficientAD run (untrained teacher: the same arithmetic, which is all equality needs)."""
    return _stock_outputs(demo_runs_root, tmp_path_factory.mktemp("stock_ead"), 1, "efficientad")


def test_torch_path_scores_like_stock(stock_demo):
    loaded = LoadedModel(stock_demo["run_dir"])
    assert loaded._fast_forward is not None  # the fast PatchCore forward is what is being checked
    scores, maps = [], []
    for p in stock_demo["paths"]:  # batch 1, as a camera would send them
        s, m = loaded.forward(loaded.preprocess([loaded.read_image(p)]))
        scores.append(s[0])
        maps.append(m[0])
    assert _rel(scores, stock_demo["raw"]) <= 1e-4
    assert np.max(np.abs(np.stack(maps) - stock_demo["maps"])) <= 1e-4 * np.max(np.abs(stock_demo["maps"]))
    # one image at a time ran on the thread count measured faster on the first one; the process's is unchanged
    assert loaded.single_image_threads in {1, torch.get_num_threads()}
    # batched as well (the test phase and uploads score in batches)
    batched, _ = loaded.forward(loaded.preprocess([loaded.read_image(p) for p in stock_demo["paths"]]))
    assert _rel(batched, stock_demo["raw"]) <= 1e-4
    # what Engine.predict returns is our raw score normalised by the same post-processor
    post = stock_demo["post"]
    ours = post._normalize(torch.tensor(scores), post.image_min, post.image_max, post.image_threshold).numpy()
    assert np.max(np.abs(ours - stock_demo["normalised"])) <= 1e-5
    # and the public predict() gives the same numbers
    preds = loaded.predict(stock_demo["paths"][:3], batch_size=2)
    assert _rel([p.score for p in preds], stock_demo["raw"][:3]) <= 1e-4


def test_openvino_fp32_scores_like_stock(stock_demo, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (needed by anomalib's ONNX export)")
    from core.engine.export import OpenVinoModel, export_openvino, export_status, fastest_model

    run_dir = tmp_path / "run"  # a copy: the session's demo run is shared with other tests
    shutil.copytree(stock_demo["run_dir"], run_dir)
    info = export_openvino(run_dir, precisions=("fp32",))
    assert info["input"]["preprocessing_in_graph"] is False
    assert info["precisions"]["fp32"]["valid"]
    model = OpenVinoModel(run_dir, "fp32")
    assert model.compiled.inputs[0].get_partial_shape()[0].is_dynamic  # not fixed to batch 2
    paths = stock_demo["paths"]
    one = np.array([model.forward(model.preprocess([model.read_image(p)]))[0][0] for p in paths])  # batch 1
    assert _rel(one, stock_demo["raw"]) <= 1e-3
    four = np.concatenate(
        [
            model.forward(model.preprocess([model.read_image(p) for p in paths[i : i + 4]]))[0]
            for i in range(0, len(paths), 4)
        ]
    )  # batch 4 (and a smaller last batch)
    assert _rel(four, stock_demo["raw"]) <= 1e-3
    preds = model.predict(paths[:2])
    assert [p.is_anomalous for p in preds] == [model.verdict(p.score) for p in preds]

    assert isinstance(fastest_model(run_dir), OpenVinoModel)
    meta = run_dir / "openvino" / "export.json"
    stale = json.loads(meta.read_text())
    stale["checkpoint_sha256"] = "0" * 64  # as if the run had been re-trained after the export
    meta.write_text(json.dumps(stale))
    assert export_status(run_dir)[0] is False
    assert isinstance(fastest_model(run_dir), LoadedModel)


def test_efficientad_torch_path_scores_like_stock(stock_efficientad):
    loaded = LoadedModel(stock_efficientad["run_dir"])
    scores, maps = [], []
    for p in stock_efficientad["paths"]:
        s, m = loaded.forward(loaded.preprocess([loaded.read_image(p)]))
        scores.append(s[0])
        maps.append(m[0])
    assert _rel(scores, stock_efficientad["raw"]) <= 1e-4
    assert np.max(np.abs(np.stack(maps) - stock_efficientad["maps"])) <= 1e-4 * np.max(
        np.abs(stock_efficientad["maps"])
    )
    post = stock_efficientad["post"]
    ours = post._normalize(torch.tensor(scores), post.image_min, post.image_max, post.image_threshold).numpy()
    assert np.max(np.abs(ours - stock_efficientad["normalised"])) <= 1e-5


def test_efficientad_openvino_fp32_scores_like_stock(stock_efficientad, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (needed by anomalib's ONNX export)")
    from core.engine.export import OpenVinoModel, export_openvino

    run_dir = tmp_path / "run"
    shutil.copytree(stock_efficientad["run_dir"], run_dir)
    info = export_openvino(run_dir, precisions=("fp32",))
    assert info["precisions"]["fp32"]["valid"]
    model = OpenVinoModel(run_dir, "fp32")
    paths = stock_efficientad["paths"]
    one = np.array([model.forward(model.preprocess([model.read_image(p)]))[0][0] for p in paths])
    assert _rel(one, stock_efficientad["raw"]) <= 1e-3


# --------------------------------------------------------------- every other backbone model in the registry


@pytest.fixture(scope="module")
def stock_models(trained_models, tmp_path_factory):
    """{model: outputs}: each session-trained backbone model scored by stock Engine.predict."""
    root, ids = trained_models
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _offline_env(root).items():
            mp.setenv(key, value)
        for name, run_id in ids.items():
            run_dir = RunRegistry().run_dir(run_id)
            records = json.loads((run_dir / "records.json").read_text())
            test_dir = Path(records[0]["path"]).parent.parent
            stock = _speed_module().run_stock(run_dir, test_dir, tmp_path_factory.mktemp(f"stock_{name}"))
            paths = [r["path"] for r in records]
            out[name] = {
                "run_dir": run_dir,
                "paths": paths,
                "raw": np.array([stock["by_path"][str(Path(p).resolve())][0] for p in paths]),
            }
    return root, out


@pytest.mark.parametrize("name", list(SMALL))
def test_each_backbone_model_scores_like_stock_on_the_torch_path_and_in_openvino(
    stock_models, tmp_path, monkeypatch, name
):
    root, outputs = stock_models
    for key, value in _offline_env(root).items():
        monkeypatch.setenv(key, value)
    stock = outputs[name]
    loaded = LoadedModel(stock["run_dir"])
    one = [loaded.forward(loaded.preprocess([loaded.read_image(p)]))[0][0] for p in stock["paths"]]  # batch 1
    assert _rel(one, stock["raw"]) <= 1e-4
    batched, _ = loaded.forward(loaded.preprocess([loaded.read_image(p) for p in stock["paths"]]))
    assert _rel(batched, stock["raw"]) <= 1e-4

    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (needed by anomalib's ONNX export)")
    from core.engine.export import ExportError, OpenVinoModel, export_openvino, fastest_model

    run_dir = tmp_path / "run"  # a copy: the session's runs are shared with other tests
    shutil.copytree(stock["run_dir"], run_dir)
    note = models.get_entry(name).export_note
    if note:  # anomalib's exporter can't give a usable graph for it: a clear refusal, and uploads use PyTorch
        with pytest.raises(ExportError, match="is not exported to OpenVINO"):
            export_openvino(run_dir, precisions=("fp32",))
        assert isinstance(fastest_model(run_dir), LoadedModel)
        return
    info = export_openvino(run_dir, precisions=("fp32",))
    assert info["precisions"]["fp32"]["valid"], info
    model = OpenVinoModel(run_dir, "fp32")
    ov = [model.forward(model.preprocess([model.read_image(p)]))[0][0] for p in stock["paths"]]
    assert _rel(ov, stock["raw"]) <= 1e-3


# ------------------------------------------------------------------------------- the pieces, on their own


def _png(arr: np.ndarray, **info) -> bytes:
    pnginfo = PngImagePlugin.PngInfo()
    for key, value in info.items():
        pnginfo.add_itxt(key, value)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", pnginfo=pnginfo)
    return buf.getvalue()


def test_read_image_fast_is_read_image():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (40, 30), dtype=np.uint8)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    xmp = '<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    cases = {
        "grey": _png(grey),
        "grey with XMP, no orientation": _png(grey, **{"XML:com.adobe.xmp": "<x:xmpmeta/>"}),
        "grey with XMP orientation 6": _png(grey, **{"XML:com.adobe.xmp": xmp}),
        "rgb": _png(rgb),
        "rgba": _png(np.dstack([rgb, grey[..., None]])),
        "16 bit": _png(grey.astype(np.uint16) * 257),
        "jpeg": buf.getvalue(),
    }
    for name, data in cases.items():
        fast, ref = read_image_fast(data, name=name), images.read_image(data, name=name)
        assert fast.dtype == ref.dtype and fast.shape == ref.shape and np.array_equal(fast, ref), name
    assert read_image_fast(cases["grey with XMP orientation 6"]).shape == (30, 40, 3)  # rotated like Pillow says
    with pytest.raises(images.ImageError):
        read_image_fast(cases["grey"][:-40], name="truncated.png")


def test_grey_preprocessing_is_identical():
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    transform = Compose([Resize((64, 64), antialias=True), Normalize([0.5, 0.4, 0.3], [0.5, 0.6, 0.7])])
    rng = np.random.default_rng(1)
    grey = np.repeat(rng.integers(0, 256, (200, 170, 1), dtype=np.uint8), 3, axis=2)
    colour = rng.integers(0, 256, (200, 170, 3), dtype=np.uint8)
    for rgb in (grey, colour):
        ref = transform(torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).unsqueeze(0))
        assert torch.equal(preprocess_images([rgb], transform), ref)
