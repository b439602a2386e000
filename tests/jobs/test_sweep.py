"""Sweeps (core.jobs.sweep): an engineer names a model, a dataset and values for its parameters; every combination
is planned with its estimate, queued as one group, and read back as that group."""

from __future__ import annotations

import pytest

from core.data.datasets import demo
from core.errors import WorkbenchError
from core.jobs import sweep
from core.store.runs import QUEUED, RunRegistry


def test_a_plan_has_one_point_per_combination_with_defaults_under_it_and_a_total_estimate(artifacts):
    spec = demo(n_train=4, n_test_good=2, n_test_per_defect=1, size=64)

    p = sweep.plan(
        "patchcore", spec, {"image_size": "256,512", "num_neighbors": ["1", "9", "9"]}, {"max_bank_size": 5000}
    )

    assert p.grid == {"image_size": [256, 512], "num_neighbors": [1, 9]}  # typed, a repeated value once
    assert [(x["image_size"], x["num_neighbors"]) for x in p.points] == [(256, 1), (256, 9), (512, 1), (512, 9)]
    assert all(x["max_bank_size"] == 5000 and x["coreset_sampling_ratio"] == 0.1 for x in p.points)
    assert p.total_seconds == pytest.approx(sum(e.seconds for e in p.estimates))
    assert p.estimates[2].seconds > p.estimates[0].seconds  # 512 px costs more than 256 px


@pytest.mark.parametrize(
    "values, message",
    [
        ({"imagesize": "256"}, "PatchCore has no parameter 'imagesize'"),
        ({"image_size": ""}, "No values given for 'image_size'"),
        ({"coreset_sampling_ratio": "0.1,2"}, "coreset_sampling_ratio"),
        ({"image_size": ",".join(str(32 * i) for i in range(2, 12)), "num_neighbors": "1,2,3,4,5,6,7"}, "70 points"),
        ({}, "at least one parameter"),
    ],
)
def test_a_bad_sweep_is_refused_with_a_clear_message_before_any_run(artifacts, values, message):
    with pytest.raises(WorkbenchError, match=message):
        sweep.plan("patchcore", demo(n_train=4, n_test_good=2, n_test_per_defect=1, size=64), values)
    assert RunRegistry().list() == []


def test_values_are_read_as_name_equals_a_comma_list():
    assert sweep.parse_assignments(["image_size=256,512", "  ", "k = 1,3"]) == {"image_size": "256,512", "k": "1,3"}
    with pytest.raises(WorkbenchError, match="name=v1,v2"):
        sweep.parse_assignments(["image_size 256"])


def test_launching_queues_every_point_as_one_group(artifacts, monkeypatch):
    monkeypatch.setenv("AW_AUTOSTART_WORKER", "0")
    spec = demo(n_train=4, n_test_good=2, n_test_per_defect=1, size=64)

    runs = sweep.launch(sweep.plan("patchcore", spec, {"image_size": "64,128"}))

    assert len(runs) == 2 and all(r.status == QUEUED for r in runs)
    tag = runs[0].extra["sweep"]
    assert tag["swept"] == ["image_size"] and tag["points"] == 2
    assert [r.id for r in sweep.sweep_runs(tag["id"])] == sorted(r.id for r in runs)
    assert sweep.sweeps()[0] | {"dataset": None} == {
        "id": tag["id"],
        "model": "patchcore",
        "dataset": None,
        "swept": "image_size",
        "points": 2,
        "done": 0,
    }
    with pytest.raises(WorkbenchError, match="No sweep 'sweep-nope'"):
        sweep.sweep_runs("sweep-nope")


def test_a_finished_sweep_has_every_run_done_with_its_own_parameters(finished_sweep):
    runs = sweep.sweep_runs(finished_sweep)

    assert len(runs) == 4 and {r.status for r in runs} == {"done"}
    assert {(r.params["image_size"], r.params["coreset_sampling_ratio"]) for r in runs} == {
        (64, 0.02),
        (64, 0.2),
        (128, 0.02),
        (128, 0.2),
    }
    assert sweep.sweeps()[0]["done"] == 4
