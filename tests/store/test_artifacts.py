"""What a run leaves in its folder (core.store.artifacts) reads back as it was written: records, maps and masks,
the log as any screen can draw it, and where each memory-bank entry came from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import RunError
from core.store.artifacts import RECORD_COLUMNS, BankProvenance, RunArtifacts, read_json, write_json


def test_a_runs_records_maps_and_masks_read_back_as_they_were_saved(tmp_path):
    art = RunArtifacts(tmp_path)
    assert not art.has_records
    records = [
        {"index": i, "path": f"/d/test/{kind}/{i:03d}.png", "label": int(kind != "good"), "defect_type": kind}
        for i, kind in enumerate(["good", "crack"])
    ]
    maps = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    masks = np.zeros((2, 8, 8))
    masks[1, 2:4, 2:4] = 1

    art.save_records(records, maps, masks)

    again = RunArtifacts(tmp_path)  # as another page or process opens the folder
    assert again.has_records
    assert list(again.records.columns) == RECORD_COLUMNS and again.records["path"].tolist() == [
        r["path"] for r in records
    ]
    assert again.maps.dtype == np.float16 and np.allclose(again.maps, maps, atol=1e-3)
    assert again.masks.dtype == bool and again.masks.sum() == 4 and again.masks[1, 2, 2]


def test_a_run_that_did_not_finish_testing_says_so_and_has_empty_results(tmp_path):
    art = RunArtifacts(tmp_path)
    with pytest.raises(RunError, match="has no test records"):
        _ = art.records
    with pytest.raises(RunError, match="has no anomaly maps"):
        _ = art.maps
    assert (art.metrics(), art.curves(), art.latency(), art.limit()) == ({}, {}, {}, {})
    assert art.loss_curve() == [] and art.log_tail() == []


def test_results_are_written_whole_and_read_back(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"image_auroc": np.float32(0.5), "per_defect": {"crack": 1}})
    assert json.loads(path.read_text()) == {"image_auroc": 0.5, "per_defect": {"crack": 1}}
    assert not list(tmp_path.glob("*.tmp"))  # written beside, then moved into place
    assert read_json(tmp_path / "missing.json", {"none": True}) == {"none": True}


def test_the_log_tail_drops_emoji_a_plant_pc_cannot_draw_and_keeps_the_last_lines(tmp_path):
    art = RunArtifacts(tmp_path)
    art.log_path.write_text(
        "\n".join(f"line {i}" for i in range(50)) + "\nTip: 💡 use a logger\nphase: done ✅ in 3 s\n"
    )
    art.loss_path.write_text('{"step": 1, "loss": 0.5}\n\n{"step": 2, "loss": 0.25}\n')

    tail = art.log_tail(3)

    assert tail == ["line 49", "Tip: use a logger", "phase: done in 3 s"]
    assert [p["loss"] for p in art.loss_curve()] == [0.5, 0.25]


def test_bank_provenance_round_trips_and_a_feedback_image_is_added_once(tmp_path):
    entries = np.array([[0, 1, 2], [1, 3, 4]], dtype=np.int32)
    BankProvenance(entries, ["/d/train/000.png", "/d/train/001.png"], (8, 8)).save(tmp_path)

    loaded = BankProvenance.load(tmp_path)
    assert len(loaded) == 2 and loaded.grid == (8, 8) and loaded.train_paths[1] == "/d/train/001.png"
    assert np.array_equal(loaded.entries, entries)

    grown = loaded.extended("/d/test/good/007.png", np.array([5, 6]), np.array([7, 0]))
    again = grown.extended("/d/test/good/007.png", np.array([1]), np.array([1]))
    assert again.train_paths == [*loaded.train_paths, "/d/test/good/007.png"]  # the image is listed once
    assert again.entries[-3:, 0].tolist() == [2, 2, 2] and len(again) == 5
    assert len(loaded) == 2  # the saved provenance is not changed by extending a copy
    assert BankProvenance.load(tmp_path / "elsewhere") is None  # a run from before provenance was kept
