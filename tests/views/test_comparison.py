"""Comparing runs without a UI: the comparison table, averages, published references, latency paths and the
threshold what-if (the chart builders: test_charts.py; the HTML report: test_report.py).

The demo runs (``demo_runs``): PatchCore, and EfficientAD with an untrained teacher — a pipeline check
that every view must flag as not a real result.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest

from core.engine import evaluation
from core.store.artifacts import RunArtifacts
from core.store.runs import DONE, Run
from core.views import charts, comparison


def fake_run(run_id: str, model: str, category: str, created_at: float, **metrics) -> Run:
    """A registry row with only what the comparison reads (no artifacts on disk)."""
    params = {"backbone": "wide_resnet50_2", "backbone_weights": "imagenet"} if model == "patchcore" else {}
    return Run(
        id=run_id,
        created_at=created_at,
        status=DONE,
        model=model,
        params=params,
        seed=0,
        dataset={"kind": "mvtec", "category": category, "root": "/data"},
        metrics=metrics,
    )


# ---- the comparison table ----------------------------------------------------------------------------------


def test_comparison_table_has_one_row_per_run_with_its_metrics(demo):
    _, runs = demo
    table = comparison.comparison_table(runs)
    assert list(table["run_id"]) == [r.id for r in runs]
    for run, row in zip(runs, table.to_dict("records"), strict=False):
        for key in comparison.METRICS:
            assert row[key] == pytest.approx(run.metrics[key])
        assert row["fit_s"] == pytest.approx(run.timings["fit_s"])
        assert row["e2e_ms_p50"] == pytest.approx(run.latency["e2e_ms_p50"])
        assert row["source"] == comparison.MEASURED
    # A pipeline-check run (EfficientAD with an untrained teacher) carries its warning into its row and legend.
    assert "UNTRAINED" in table.loc[1, "warnings"] and "untrained teacher" in table.loc[1, "series"]


def test_the_csv_export_reads_back_as_the_same_table(demo):
    _, runs = demo
    table = comparison.comparison_table(runs)
    back = pd.read_csv(io.BytesIO(comparison.table_csv(table)))
    assert list(back["run_id"]) == list(table["run_id"])
    assert back["image_auroc"].tolist() == pytest.approx(table["image_auroc"].tolist())


def test_two_categories_of_one_setup_average_to_their_mean_and_a_rerun_counts_once():
    runs = [
        fake_run("a", "patchcore", "grid", 1, image_auroc=0.90, pixel_auroc=0.95),
        fake_run("b", "patchcore", "tile", 2, image_auroc=0.80, pixel_auroc=0.85),
        fake_run("c", "patchcore", "tile", 3, image_auroc=0.70, pixel_auroc=None),  # latest tile run wins
    ]
    avg = comparison.averages_table(runs).iloc[0]
    expected = evaluation.average_metrics([runs[0].metrics, runs[2].metrics])
    assert avg["category"] == comparison.AVERAGE and avg["n_categories"] == 2
    assert avg["image_auroc"] == pytest.approx(expected["image_auroc"]) == pytest.approx(0.80)
    assert avg["pixel_auroc"] == pytest.approx(0.95)  # None is ignored, not counted as 0


def test_by_default_the_latest_run_of_each_model_on_each_category_is_compared():
    runs = [
        fake_run("old", "patchcore", "grid", 1),
        fake_run("new", "patchcore", "grid", 5),
        fake_run("tile", "patchcore", "tile", 2),
        fake_run("ead", "efficientad", "grid", 3),
    ]
    assert sorted(comparison.default_selection(runs)) == ["ead", "new", "tile"]


def test_the_default_comparison_leaves_out_pipeline_checks_when_real_results_exist():
    check = fake_run("check", "efficientad", "grid", 9)
    check.params = {"teacher": "untrained"}
    real = [fake_run("pc", "patchcore", "grid", 1), fake_run("ead", "efficientad", "tile", 2)]
    assert sorted(comparison.default_selection([*real, check])) == ["ead", "pc"]
    assert comparison.default_selection([check]) == ["check"]  # nothing else: shown rather than an empty page


def test_a_setup_run_twice_on_one_category_gets_the_run_id_in_its_legend_name():
    runs = [fake_run("r1", "patchcore", "grid", 1), fake_run("r2", "patchcore", "grid", 2)]
    series = comparison.comparison_table(runs)["series"].tolist()
    assert series[0] != series[1] and series[0].endswith("r1")


# ---- published reference numbers ---------------------------------------------------------------------------


def test_reference_rows_are_labelled_published_not_measured_here_with_their_source():
    refs = comparison.reference_table()
    assert set(refs["source"]) == {"published, not measured here"}
    assert refs["series"].str.contains("published, not measured here").all()
    assert refs["reference"].str.len().gt(10).all()
    grid = refs[refs["category"] == "grid"].set_index(["model", "config"])
    assert grid.loc[("PatchCore", "WRN-50, 10 % coreset (paper)"), "image_auroc"] == 0.979
    assert grid.loc[("PatchCore", "WRN-50, 10 % coreset (paper)"), "pixel_auroc"] == 0.987
    assert grid.loc[("PatchCore", "WRN-50 (anomalib README)"), "image_auroc"] == 0.959
    assert grid.loc[("PaDiM", "ResNet-18 (anomalib README)"), "image_auroc"] == 0.857
    assert set(grid.index.get_level_values("model")) >= {"PatchCore", "PaDiM", "DFM", "STFPM", "FastFlow", "FRE"}
    # Only the compared models' references are offered, each naming the backbone it was measured with.
    only = comparison.reference_table({"grid"}, {"PaDiM"})
    assert set(only["model"]) == {"PaDiM"} and set(only["backbone"]) == {"resnet18"}


def test_only_references_for_the_compared_categories_join_the_chart(demo):
    _, runs = demo
    assert comparison.reference_table({"demo"}).empty
    long = comparison.metrics_long(comparison.comparison_table(runs), None, comparison.reference_table({"grid"}))
    published = long[long["source"] == comparison.PUBLISHED]
    assert set(published["category"]) == {"grid"} and not published.empty
    fig = charts.metric_bars(long)
    names = {t.name for t in fig.data}
    assert any("published, not measured here" in n for n in names)


# ---- latency paths -----------------------------------------------------------------------------------------


def test_stock_ours_and_openvino_latency_paths_show_side_by_side_and_missing_ones_are_skipped():
    # A run's own timing is the torch path ("ours") until benchmarks/speed.py adds every path it measured.
    latency = {
        "e2e_ms_p50": 40.0,
        "e2e_ms_p95": 50.0,
        "images_per_s_b1": 25.0,
        "paths": {
            "openvino_fp32": {"e2e_ms_p50": 20.0, "images_per_s_b1": 50.0},
            "stock": {"e2e_ms_p50": 80.0, "e2e_ms_p95": 95.0},
            "tensorrt": {},
        },
    }  # no figures: left out
    assert list(comparison.latency_paths(latency)) == ["stock", "ours", "openvino_fp32"]
    assert list(comparison.latency_paths({"e2e_ms_p50": 10.0})) == ["ours"]
    assert comparison.latency_paths({}) == {}
    with_torch = {**latency, "paths": {**latency["paths"], "torch": {"e2e_ms_p50": 38.0}}}
    assert list(comparison.latency_paths(with_torch)) == ["stock", "torch", "openvino_fp32"]  # no duplicate

    run = fake_run("r", "patchcore", "grid", 1)
    run.latency = latency
    fig = charts.latency_bars(comparison.latency_table([run]))
    assert {t.name for t in fig.data} == {"stock anomalib (Engine.predict)", "workbench torch", "OpenVINO FP32"}


# ---- threshold what-if -------------------------------------------------------------------------------------


def test_zero_escape_threshold_misses_nothing_and_a_threshold_above_every_score_misses_every_defect(demo):
    registry, runs = demo
    records = RunArtifacts(registry.run_dir(runs[0].id)).records
    n_anomalous = int((records["label"] == 1).sum())

    zero = comparison.threshold_panel(records, comparison.zero_escapes(records))
    assert zero.view["fn"] == 0 and zero.misses.empty
    assert zero.confusion.to_numpy().sum() == len(records)
    assert len(zero.false_positives) == zero.view["fp"]

    above = comparison.threshold_panel(records, float(records["score"].max()) + 1)
    assert above.view["fn"] == n_anomalous == len(above.misses)
    assert above.per_defect["missed"].sum() == n_anomalous
