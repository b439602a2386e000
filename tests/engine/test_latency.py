"""Latency (core.engine.latency): a run's model timed after warm-up, per image and per batch, with the machine it
ran on recorded beside the figures. No timing thresholds here: only what the figures must be."""

from __future__ import annotations

import torch

from core.engine import latency
from core.engine.inference import LoadedModel
from core.store.artifacts import RunArtifacts
from core.store.runs import RunRegistry


def test_timing_a_run_gives_percentiles_throughput_per_batch_and_its_path_entry(demo_runs):
    run_dir = RunRegistry().run_dir(demo_runs[0])
    paths = RunArtifacts(run_dir).records.path.tolist()
    loaded = LoadedModel(run_dir)

    result = latency.measure(loaded, paths, batch_sizes=(2, 99), max_images=4, warmup=1)

    assert result["n_images"] == 4 and result["path"] == "torch"
    assert 0 < result["model_ms_p50"] <= result["e2e_ms_p50"] <= result["e2e_ms_p95"]  # the model is part of e2e
    assert set(result["images_per_s_by_batch"]) == {"1", "2"}  # a batch larger than the images is not tried
    assert result["images_per_s_best"] == max(result["images_per_s_by_batch"].values())
    assert str(result["best_batch_size"]) in result["images_per_s_by_batch"]
    assert result["paths"] == {"torch": latency.path_entry(result)}
    assert set(result["paths"]["torch"]) == set(latency.PATH_FIELDS)
    assert latency.measure(loaded, []) == {}


def test_every_run_records_the_versions_and_the_machine_it_ran_on():
    env = latency.environment()
    assert env["torch"] == torch.__version__ and env["anomalib"] and env["timm"]
    assert env["cpu"] == latency.cpu_model() != "" and env["cpu_count"] >= 1
    assert latency.peak_rss_mb() > 50  # this process holds torch: tens of MB at the very least
