"""What Home and Training summarise (core.views.overview): what this machine has, and the runs as one table."""

from __future__ import annotations

import math

from core.data import datasets, importing
from core.data.demo_data import make_demo_image
from core.data.images import to_png_bytes
from core.store.runs import DONE, FAILED, Run
from core.views import overview
from tests.conftest import SMALL_DEMO


def test_a_fresh_offline_machine_has_the_bundled_backbone_no_mvtec_and_no_own_datasets(artifacts, monkeypatch):
    monkeypatch.setenv("AW_MVTEC_ROOT", str(artifacts / "no_mvtec_here"))

    machine = overview.machine_overview()

    assert machine.offline and machine.artifacts == artifacts
    assert machine.mvtec_categories == [] and machine.custom_datasets == []
    assert "tf_efficientnet_lite0" in machine.backbones  # the weights that ship with the product
    status = {row["weights"]: row["status"] for row in machine.weights}
    assert status["wide_resnet50_2"] == "missing"


def test_an_imported_own_dataset_shows_in_the_overview_and_the_demo_data_does_not(artifacts, tmp_path):
    datasets.demo(**SMALL_DEMO)
    for i in range(6):
        (tmp_path / "normal").mkdir(exist_ok=True)
        (tmp_path / "normal" / f"ok_{i}.png").write_bytes(to_png_bytes(make_demo_image("good", seed=i, size=64)[0]))
    importing.import_folder("line3", tmp_path / "normal")

    assert overview.machine_overview().custom_datasets == ["line3"]


def test_the_runs_table_has_one_row_per_run_with_numbers_and_a_pipeline_check_is_flagged():
    demo = {"kind": "demo", "category": "demo", "root": "/d", "max_train_images": 5}
    measured = Run(
        id="a",
        created_at=0,
        status=DONE,
        model="patchcore",
        dataset=demo,
        params={"backbone": "tf_efficientnet_lite0"},
        seed=0,
        metrics={"image_auroc": 0.97, "pixel_auroc": 0.9},
        timings={"fit_s": 12.5},
        latency={"images_per_s_b1": 20.0},
    )
    check = Run(
        id="b",
        created_at=1,
        status=DONE,
        model="efficientad",
        dataset={"kind": "mvtec", "category": "grid", "root": "/m"},
        params={"teacher": "untrained"},
        seed=0,
    )
    gone = Run(
        id="c",
        created_at=2,
        status=FAILED,
        model="cflow",
        dataset={"kind": "folder", "category": "x"},
        params={},
        seed=0,
    )

    frame = overview.runs_frame([measured, check, gone])

    assert list(frame.columns) == overview.RUN_COLUMNS and frame["id"].tolist() == ["a", "b", "c"]
    assert frame.loc[0, "image AUROC"] == 0.97 and frame.loc[0, "fit s"] == 12.5 and frame.loc[0, "img/s"] == 20.0
    assert frame.loc[0, "dataset"] == "Demo (first 5 train images)" and frame.loc[0, "model"] == "PatchCore"
    assert math.isnan(frame.loc[1, "image AUROC"])  # not measured: NaN, a number column still
    assert frame.loc[1, "note"] == "pipeline check only" and frame.loc[0, "note"] == ""
    assert (frame.loc[1, "dataset"], frame.loc[1, "category"]) == ("MVTec AD", "grid")
    # A model this build no longer registers is shown by its name, not an error.
    assert (frame.loc[2, "model"], frame.loc[2, "dataset"], frame.loc[2, "note"]) == ("cflow", "Own images", "")
