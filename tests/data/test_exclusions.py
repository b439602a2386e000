"""Excluding training images after an audit: recorded beside the dataset, reversible, the user's files untouched."""

from __future__ import annotations

import pytest

from core.data import datasets, exclusions
from core.errors import DatasetError
from tests.conftest import SMALL_DEMO


def test_excluding_images_leaves_them_out_of_training_and_the_files_alone(artifacts):
    spec = datasets.demo(**SMALL_DEMO)
    before = datasets.train_images(spec)
    files = {p: p.read_bytes() for p in before}

    exclusions.exclude_images(spec, [before[1], "003.png"], reason="scratch at the edge")
    again = datasets.demo(**SMALL_DEMO)

    assert again.excluded == (before[1].name, "003.png")
    assert [p.name for p in datasets.train_images(again)] == [p.name for p in before if p.name not in again.excluded]
    assert "2 train images excluded" in again.label
    assert {p: p.read_bytes() for p in before} == files  # nothing moved, deleted or changed
    record = exclusions.read_exclusions(spec)
    assert record["003.png"]["reason"] == "scratch at the edge"


def test_a_run_records_what_it_trained_without_and_a_rerun_repeats_it(artifacts):
    spec = datasets.demo(**SMALL_DEMO)
    exclusions.exclude_images(spec, ["000.png"], reason="bad")
    stored = datasets.demo(**SMALL_DEMO).to_dict()
    assert stored["excluded"] == ["000.png"]

    exclusions.include_images(spec, ["000.png"])  # later the image is taken back ...
    old = datasets.DatasetSpec.from_dict(stored)
    assert "000.png" not in [p.name for p in datasets.train_images(old)]  # ... the old run's spec still omits it
    assert "excluded" not in datasets.demo(**SMALL_DEMO).to_dict()  # no exclusions: stored as before


def test_including_again_undoes_an_exclusion_and_the_history_keeps_both(artifacts):
    spec = datasets.demo(**SMALL_DEMO)
    n = len(datasets.train_images(spec))
    exclusions.exclude_images(spec, ["002.png"])
    exclusions.include_images(spec, ["002.png"])

    assert len(datasets.train_images(datasets.demo(**SMALL_DEMO))) == n
    assert [h["action"] for h in exclusions.history(spec)] == ["exclude", "include"]


def test_unknown_images_are_refused_with_the_folder_named(artifacts):
    spec = datasets.demo(**SMALL_DEMO)
    with pytest.raises(DatasetError, match="not a training image"):
        exclusions.exclude_images(spec, ["nope.png"])
    with pytest.raises(DatasetError, match="Not excluded"):
        exclusions.include_images(spec, ["001.png"])
