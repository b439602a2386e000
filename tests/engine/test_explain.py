"""Why is an image flagged: the hottest patch next to its nearest normal patch, from the bank's provenance."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import settings
from core.data import datasets, images
from core.engine.explain import explain, patch_embedding
from core.engine.inference import LoadedModel
from core.store.artifacts import BankProvenance, RunArtifacts
from core.store.runs import RunRegistry


@pytest.fixture
def patchcore(demo_runs) -> LoadedModel:
    return LoadedModel(settings().run_dir(demo_runs[0]))


def test_fit_keeps_where_every_bank_entry_came_from(demo_runs, patchcore):
    provenance = BankProvenance.load(patchcore.run_dir)
    bank = patchcore.module.model.memory_bank
    assert len(provenance) == bank.shape[0] and provenance.entries.dtype == np.int32
    spec = datasets.DatasetSpec.from_dict(RunRegistry().get(demo_runs[0]).dataset)
    assert set(provenance.train_paths) == {str(p) for p in datasets.train_images(spec)}
    # The entry really is that patch of that training image: its features, computed again, are the bank row.
    for i in range(0, len(provenance), 25):
        image, row, col = provenance.entries[i]
        rows, grid = patch_embedding(patchcore, images.read_image(provenance.train_paths[image]))
        assert grid == provenance.grid
        np.testing.assert_allclose(rows[row * grid[1] + col].numpy(), bank[i].numpy(), atol=1e-4)


def test_a_flagged_image_is_explained_by_its_nearest_normal_patch(demo_runs, patchcore):
    records = RunArtifacts(patchcore.run_dir).records
    defect = records[records.label == 1].sort_values("score").iloc[-1]  # the most anomalous test image

    why = explain(patchcore, defect.path)

    assert why.score == pytest.approx(defect.score, rel=1e-5)
    assert why.flagged is True and why.notes == []
    nearest = why.nearest
    assert nearest.train_path in BankProvenance.load(patchcore.run_dir).train_paths
    height, width = images.read_image(nearest.train_path).shape[:2]
    x0, y0, x1, y1 = nearest.box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    # The scoring distance: the image score is this maximum, re-weighted by a factor of at most 1.
    assert nearest.distance >= why.score - 1e-4
    assert why.hot.crop.shape == nearest.crop.shape  # side by side at the same scale
    assert "distance" in why.summary and "box" in why.summary


def test_a_normal_image_is_closer_to_the_bank_than_a_defect(demo_runs, patchcore):
    records = RunArtifacts(patchcore.run_dir).records
    good = explain(patchcore, records[records.label == 0].sort_values("score").iloc[0].path)
    bad = explain(patchcore, records[records.label == 1].sort_values("score").iloc[-1].path)
    assert good.nearest.distance < bad.nearest.distance


def test_a_model_without_a_bank_shows_its_top_three_hot_regions(demo_runs):
    efficientad = LoadedModel(settings().run_dir(demo_runs[1]))
    records = RunArtifacts(efficientad.run_dir).records
    why = explain(efficientad, records.iloc[-1].path)
    assert why.nearest is None
    assert len(why.regions) == 3
    assert [r.score for r in why.regions] == sorted((r.score for r in why.regions), reverse=True)
    assert all(r.crop.shape == (192, 192, 3) for r in why.regions)
    # The nearest normal training image comes from the run's similarity index, or a note says why not.
    assert why.nearest_image is not None or any("nearest normal image" in n for n in why.notes)
