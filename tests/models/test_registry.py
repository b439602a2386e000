"""Every registered model, as a user meets it: described by the registry alone, refused before it queues where its
weights are missing, estimated before it starts, and shown by every page. How each backbone model trains and scores
offline: test_feature_models.py.

Each model trains once per session on tiny synthetic data with small settings (seconds each). A model added to the
registry is picked up by every test here; ``conftest.SMALL`` holds its small settings.
"""

from __future__ import annotations

import importlib
import json

import pytest
from streamlit.testing.v1 import AppTest

from core import models
from core.config import PROJECT_ROOT
from core.data import datasets
from core.errors import WeightsError
from core.jobs import queue as jobs
from core.models import weights
from core.store.runs import RunRegistry
from tests.conftest import MODELS_DEMO, SMALL

BACKBONE_MODELS = [name for name, e in models.REGISTRY.items() if e.backbone_stages and name != "patchcore"]
DEMO = MODELS_DEMO


def test_every_model_beyond_patchcore_with_a_cnn_backbone_has_small_test_settings():
    assert len(BACKBONE_MODELS) >= 5
    assert set(BACKBONE_MODELS) == set(SMALL), "a new registry entry needs its small settings in conftest.SMALL"


# ---- the registry is the one place a model is described ---------------------------------------------------


@pytest.mark.parametrize("name", list(models.REGISTRY))
def test_each_entry_names_its_anomalib_class_and_explains_every_parameter(name):
    entry = models.REGISTRY[name]
    assert entry.label and entry.description
    assert hasattr(importlib.import_module("anomalib.models"), entry.anomalib_class)
    for p in entry.params:
        assert len(p.help) > 15, f"{name}.{p.name} needs a help text"
    assert entry.estimate is not None or entry.cost is not None, "the launch form needs a time estimate"
    assert entry.patch_features is not None or entry.feature_submodule, "similarity search needs patch features"


@pytest.mark.parametrize("name", [n for n, e in models.REGISTRY.items() if e.backbone_stages])
def test_backbone_stages_map_to_real_layers_of_every_backbone(name):
    entry = models.REGISTRY[name]
    assert entry.anomalib_backbone in weights.BACKBONES
    for backbone in weights.BACKBONES.values():
        layers = backbone.stage_layers(entry.backbone_stages)
        channels, _ = backbone.feature_dims(list(layers))
        assert channels > 0, f"{name} on {backbone.name}: {layers}"


def test_offline_each_model_defaults_to_the_bundled_backbone_and_names_its_own_default(artifacts):
    for name in BACKBONE_MODELS:
        entry = models.get_entry(name)
        assert models.default_params(name)["backbone"] == "tf_efficientnet_lite0"
        backbone_help = next(p.help for p in entry.params if p.name == "backbone")
        assert entry.anomalib_backbone in backbone_help


def test_online_each_model_keeps_anomalibs_default_backbone(artifacts, monkeypatch):
    monkeypatch.setenv("AW_OFFLINE", "0")  # online: defaults are downloaded on first use, as anomalib does
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for name in BACKBONE_MODELS + ["patchcore"]:
        assert models.default_params(name)["backbone"] == models.get_entry(name).anomalib_backbone


@pytest.mark.parametrize("name", BACKBONE_MODELS)
def test_a_model_whose_backbone_weights_are_missing_offline_is_refused_before_it_queues(artifacts, name):
    spec = datasets.demo(n_train=4, n_test_good=2, n_test_per_defect=1, size=64)
    missing = models.get_entry(name).anomalib_backbone
    with pytest.raises(
        WeightsError,
        match=rf"Weights for backbone '{missing}' are not available offline.*"
        r"config\.json \+ model\.safetensors",
    ):
        jobs.submit(name, spec, {**SMALL[name], "backbone": missing}, start=False)
    assert RunRegistry().list() == []


# ---- the launch estimate, on the models trained offline ----------------------------------------------------


def test_the_launch_estimate_covers_every_model(model_runs):
    from core.engine import estimate

    spec = datasets.demo(**DEMO)
    for name in BACKBONE_MODELS:
        est = estimate.estimate_run(name, SMALL[name], spec)
        assert est is not None and est.seconds > 0 and est.peak_mb > 1000, name


# ---- every page, without page code knowing the model ------------------------------------------------------


def _page(path: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=240).run()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def test_the_launch_form_offers_every_registered_model_with_its_parameters(artifacts, monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")
    at = _page("pages/training.py")
    at.radio(key="source").set_value("Demo dataset").run()  # a dataset that exists on every machine
    box = at.multiselect(key="models")
    assert set(box.options) >= {e.label for e in models.REGISTRY.values()}
    box.set_value(["padim", "stfpm"]).run()
    assert not at.exception, at.exception
    assert at.number_input(key="param_stfpm_max_epochs").value == 12
    notes = " ".join(c.value for c in [*at.caption, *at.warning])  # a long run's estimate is a warning
    assert "PaDiM on" in notes and "STFPM on" in notes  # each gets its time and memory estimate


def test_one_click_selects_every_model_that_runs_here_offline(artifacts, monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")
    at = _page("pages/training.py")
    at.button(key="all_models").click().run()
    assert not at.exception, at.exception
    chosen = set(at.multiselect(key="models").value)
    assert chosen == {"patchcore", *BACKBONE_MODELS}  # EfficientAD's teacher can't be had offline
    assert models.unavailable_reason("efficientad") and "teacher" in models.unavailable_reason("efficientad")


def test_compare_shows_every_model_side_by_side_with_their_backbone_and_references(model_runs):
    at = _page("pages/compare.py")
    at.multiselect(key="cmp_runs").set_value(list(model_runs.values())).run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "series" in d.value.columns or "model setup" in d.value.columns)
    labels = " ".join(table.iloc[:, 1].astype(str))
    for name in model_runs:
        assert f"{models.get_entry(name).label} · tf_efficientnet_lite0" in labels
    assert not any("Different backbones" in i.value for i in at.info)  # all Lite0, and no reference for demo data
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert charts


@pytest.mark.parametrize("name", ["padim", "fastflow"])
def test_heatmaps_and_similar_cases_open_on_a_new_models_run(model_runs, name):
    at = _page("pages/heatmaps.py")
    at.selectbox(key="hm_run").set_value(model_runs[name]).run()
    assert not at.exception and not at.error
    assert any(c.value.startswith("Truth:") for c in at.tabs[0].caption)
    at = _page("pages/similarity.py")
    at.selectbox(key="sim_run").set_value(model_runs[name]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m for m in at.markdown if m.value.startswith("**#")], "neighbour cards are shown"
