"""The HTML report carries the trust checks: the training-set audit of the runs' dataset and each run's limit."""

from __future__ import annotations

from core.data import datasets
from core.engine.audit import audit_dataset
from core.engine.limit import detection_limit
from core.store.runs import RunRegistry
from core.views.report import build_html_report


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
