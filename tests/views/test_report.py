"""The self-contained HTML report (core.views.report): every run named, heatmaps embedded, nothing fetched from the
network, and the trust checks (the training-set audit of the runs' dataset and each run's detection limit)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.data import datasets
from core.engine.audit import audit_dataset
from core.engine.limit import detection_limit
from core.store.artifacts import RunArtifacts
from core.store.runs import RunRegistry
from core.views.report import build_html_report, heatmap_png, pick_heatmaps


def test_a_report_of_audited_and_measured_runs_states_both(demo_runs):
    registry = RunRegistry()
    runs = [registry.get(i) for i in demo_runs]
    spec = datasets.DatasetSpec.from_dict(runs[0].dataset)
    audit_dataset(spec, k=3, params={"image_size": 128})
    detection_limit(demo_runs[0], areas=(0.001, 0.02), contrasts=(0.6,), n_per_cell=2)

    page = build_html_report(runs, registry, heatmaps_per_run=0)

    assert "<h2>Trust checks</h2>" in page
    assert "Training-set audit: demo:demo" in page and "3-fold PatchCore" in page
    assert f"Run {demo_runs[0]} trained without: nothing." in page
    assert f"Detection limit: {demo_runs[0]} · patchcore" in page
    assert "caught 95% of the time" in page or "not caught 95%" in page


def test_html_report_is_self_contained_names_every_run_and_embeds_heatmaps(demo):
    registry, runs = demo
    page = build_html_report(runs, registry, heatmaps_per_run=2)
    for run in runs:
        assert run.id in page
    # Opens offline: no script, stylesheet or image fetched from the network; plotly.js inlined once.
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=[\"']https?:", page)
    assert not re.search(r"<img[^>]+src=[\"']https?:", page)
    assert page.count("Plotly.newPlot(") >= 5
    assert len(re.findall(r"<script type='text/javascript'>/\*\*\s*\* plotly\.js v", page)) == 1
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", page)) == 2 * len(runs)
    assert "published, not measured here" in page
    assert "UNTRAINED" in page  # the pipeline-check warning travels with the numbers
    assert "coreset_sampling_ratio" in page  # run parameters


def test_heatmap_pictures_show_the_image_next_to_its_overlay(demo):
    registry, runs = demo
    art = RunArtifacts(registry.run_dir(runs[1].id))
    picks = pick_heatmaps(art.records, 3)
    assert len(picks) == 3 and "highest-scoring defect" in picks[0][1]
    png = heatmap_png(np.zeros((64, 64, 3), np.uint8), art.maps[picks[0][0]].astype(np.float32), art.masks[picks[0][0]])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_needs_at_least_one_run(artifacts):
    from core.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="at least one"):
        build_html_report([])
