"""Training-set audit: defective images planted among the 'good' ones are ranked at the top by k-fold PatchCore."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.data import datasets, exclusions
from core.engine.audit import audit_dataset, audit_maps, load_audit
from core.errors import DatasetError
from tests.conftest import SMALL_DEMO

FAST = {"image_size": 128}
PLANTED = ("planted_crack.png", "planted_spot.png")


@pytest.fixture
def contaminated(artifacts):
    """The small demo set with two defective test images copied into train/good, as a careless export would."""
    spec = datasets.demo(**SMALL_DEMO)
    for name in PLANTED:
        defect = name.removeprefix("planted_").removesuffix(".png")
        shutil.copy(spec.path / "test" / defect / "000.png", spec.path / "train" / "good" / name)
    return spec


def test_an_audit_ranks_the_planted_defective_images_first(contaminated):
    result = audit_dataset(contaminated, k=4, params=FAST)

    assert len(result.entries) == SMALL_DEMO["n_train"] + len(PLANTED)
    assert {e.name for e in result.top(2)} == set(PLANTED)
    assert all(e.suspicious for e in result.top(2))
    assert [e.rank for e in result.entries] == list(range(1, len(result.entries) + 1))
    assert sorted({e.fold for e in result.entries}) == [0, 1, 2, 3]
    assert "audited (12 images, 4-fold PatchCore" in result.statement()


def test_the_audit_is_stored_with_maps_and_excluding_its_top_images_changes_the_next_training_set(contaminated):
    audit_dataset(contaminated, k=3, params=FAST)
    stored = load_audit(contaminated)
    maps = audit_maps(contaminated)
    assert stored is not None and maps.shape == (len(stored.entries), 128, 128)
    top = stored.entries[0]
    assert maps[0].max() > np.median(maps[len(maps) // 2])  # the top image's map is hotter than a middle one's

    exclusions.exclude_images(contaminated, [e.name for e in stored.top(2)], reason="defective, found by audit")
    retrain = datasets.demo(**SMALL_DEMO)
    assert set(retrain.excluded) == set(PLANTED)
    assert not set(PLANTED) & {p.name for p in datasets.train_images(retrain)}
    assert load_audit(contaminated).entries[0].excluded and top.name in PLANTED


def test_excluded_images_are_still_scored_but_never_fitted_on(contaminated):
    exclusions.exclude_images(contaminated, list(PLANTED))
    result = audit_dataset(contaminated, k=4, params=FAST)
    top = result.top(2)
    assert {e.name for e in top} == set(PLANTED) and all(e.excluded for e in top)


def test_too_many_folds_is_a_clear_error(contaminated):
    with pytest.raises(DatasetError, match="folds"):
        audit_dataset(contaminated, k=50, params=FAST)
