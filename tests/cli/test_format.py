"""What every command shares (core.cli.format): plain text tables, numbers as a reader wants them, and the
parsing of ``--dataset`` and ``--param`` with a clear message for a mistake."""

from __future__ import annotations

import pytest

from core.cli.format import fmt, parse_dataset, parse_params, table
from core.errors import WorkbenchError


def test_a_table_aligns_every_column_to_its_widest_cell_and_reads_as_markdown():
    out = table([{"run": "a1", "image AUROC": 0.97}, {"run": "b22222", "image AUROC": None}])
    lines = out.splitlines()
    assert lines[0] == "| run    | image AUROC |"
    assert lines[1] == "|--------|-------------|"
    assert lines[2:] == ["| a1     | 0.970       |", "| b22222 | –           |"]
    assert len({len(line) for line in lines}) == 1
    assert table([]) == "(none)"


def test_numbers_are_shown_to_three_places_big_ones_grouped_and_tiny_ones_not_as_zero():
    assert [fmt(0.97654), fmt(12345.6), fmt(1e-4), fmt(0.0), fmt(None), fmt(3)] == [
        "0.977",
        "12,346",
        "1e-04",  # a learning rate, not 0.000
        "0.000",
        "–",
        "3",
    ]


def test_parameters_are_key_value_pairs_and_anything_else_is_refused_by_name():
    assert parse_params(["coreset_sampling_ratio = 0.01", "backbone=tf_efficientnet_lite0"]) == {
        "coreset_sampling_ratio": "0.01",
        "backbone": "tf_efficientnet_lite0",
    }
    assert parse_params([]) == {}
    with pytest.raises(WorkbenchError, match="Parameters are key=value, got 'ratio'"):
        parse_params(["ratio"])


def test_a_dataset_of_an_unknown_kind_names_the_kinds_there_are(artifacts):
    with pytest.raises(WorkbenchError, match=r"Unknown dataset 'imagenet:dogs': use demo, mvtec:<category> or folder:"):
        parse_dataset("imagenet:dogs")
    assert parse_dataset("demo").kind == "demo"


def test_a_run_shown_says_which_image_size_the_data_chose_and_why(artifacts):
    from core.cli.format import show_run
    from core.store.runs import Run

    why = "512 px, the bank capped at 8,000 patches: the images are about 1024×1024"
    run = Run(
        id="r1",
        created_at=0.0,
        status="queued",
        model="patchcore",
        dataset={"kind": "mvtec", "category": "grid"},
        params={"image_size": 512, "max_bank_size": 8000},
        seed=0,
        extra={"chosen_for_data": {"params": {"image_size": 512}, "why": why}},
    )
    assert f"image size chosen for the data: {why}" in show_run(run)
