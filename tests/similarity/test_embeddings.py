"""Similar cases, core side: a finished run's images are in Qdrant and can be searched like a user would.

Real models, real Qdrant (embedded local mode): the session's demo runs were indexed by the training worker.
Tests that re-index or delete work on a copy of the session's artifacts, so the other tests keep their index.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.config import settings
from core.data import images
from core.engine.inference import LoadedModel
from core.errors import VectorStoreError
from core.similarity import embeddings
from core.similarity.vectorstore import VectorStore
from core.store.artifacts import RunArtifacts
from core.store.runs import RunRegistry


def _at(table: dict, k: int):
    # run.retrieval went through JSON in the registry, so its k keys are strings
    return table.get(k, table.get(str(k)))


def _model(run_id: str) -> LoadedModel:
    return LoadedModel(settings().run_dir(run_id))


def _first_defective(run_id: str):
    records = RunArtifacts(settings().run_dir(run_id)).records
    return records[records["label"] == 1].iloc[0]


def test_a_finished_run_is_indexed_with_precision_for_both_embeddings(demo_runs):
    patchcore, _ = demo_runs
    run = RunRegistry().get(patchcore)
    n_test = len(RunArtifacts(settings().run_dir(patchcore)).records)
    assert run.retrieval, run.extra.get("index_error")
    assert run.retrieval["points"] > n_test  # test images plus the train images
    for using in ("global", "defect"):
        precision = run.retrieval[using]
        assert "error" not in precision, precision
        assert precision["n"] == n_test
        for what in ("same_label", "same_defect_type"):
            for k in (1, 5, 10):
                assert 0.0 <= _at(precision[what], k) <= 1.0
    assert VectorStore.open().count(run_id=patchcore) == run.retrieval["points"]


@pytest.mark.parametrize("using", ["defect", "global"])
def test_querying_with_a_defective_test_image_returns_k_other_images_best_first(demo_runs, using):
    patchcore, _ = demo_runs
    query = _first_defective(patchcore)
    rgb = images.read_image(query["path"])

    info, hits = embeddings.similar(patchcore, _model(patchcore), rgb, using=using, k=5, exclude_path=query["path"])

    assert len(hits) == 5
    assert all(h.payload["image_path"] != query["path"] for h in hits)  # never the query itself
    assert all(h.payload["run_id"] == patchcore for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)  # best first
    assert info["score"] == pytest.approx(float(query["score"]), rel=1e-3, abs=1e-3)  # same model, same score


def test_the_defect_centred_neighbours_of_a_defective_image_are_defective_first(demo_runs):
    # The global embedding may well rank normal images of the same texture first (that is what it is for);
    # the defect-centred one, the page's default, must lead with other defects.
    patchcore, _ = demo_runs
    query = _first_defective(patchcore)

    _, hits = embeddings.similar(
        patchcore, _model(patchcore), images.read_image(query["path"]), using="defect", k=5, exclude_path=query["path"]
    )

    assert all(h.payload["label"] == 1 for h in hits[:2]), [(h.payload["defect_type"], h.score) for h in hits]


def test_filtering_neighbours_to_normal_returns_only_normal_images(demo_runs):
    patchcore, _ = demo_runs
    query = _first_defective(patchcore)

    _, hits = embeddings.similar(
        patchcore, _model(patchcore), images.read_image(query["path"]), k=8, label="normal", exclude_path=query["path"]
    )

    assert len(hits) == 8
    assert {h.payload["label"] for h in hits} == {0}
    assert {h.payload["defect_type"] for h in hits} == {"good"}


def test_filtering_by_defect_type_and_split_returns_only_those(demo_runs):
    patchcore, _ = demo_runs
    query = _first_defective(patchcore)

    _, hits = embeddings.similar(
        patchcore,
        _model(patchcore),
        images.read_image(query["path"]),
        k=20,
        defect_type=query["defect_type"],
        split="test",
        exclude_path=query["path"],
    )

    same_type = RunArtifacts(settings().run_dir(patchcore)).records["defect_type"] == query["defect_type"]
    assert len(hits) == int(same_type.sum()) - 1  # all the others of its type, fewer than k
    assert {(h.payload["defect_type"], h.payload["split"]) for h in hits} == {(query["defect_type"], "test")}


def test_reindexing_a_run_replaces_its_points_instead_of_adding_more(demo_runs_copy):
    patchcore, _ = demo_runs_copy
    store = VectorStore.open()
    before = store.count(run_id=patchcore)

    result = embeddings.index_run(patchcore, _model(patchcore))

    assert result["points"] == before
    assert store.count(run_id=patchcore) == before


def test_deleting_a_runs_points_makes_a_query_fail_with_a_clear_message(demo_runs_copy):
    patchcore, efficientad = demo_runs_copy
    store = VectorStore.open()
    n = store.count(run_id=patchcore)
    other = store.count(run_id=efficientad)

    assert store.delete_run(patchcore) == n

    assert store.count(run_id=patchcore) == 0
    assert store.count(run_id=efficientad) == other  # the other run keeps its index
    query = _first_defective(patchcore)
    with pytest.raises(VectorStoreError, match=f"run {patchcore} has no similarity index"):
        embeddings.similar(patchcore, _model(patchcore), images.read_image(query["path"]))


def test_a_small_grayscale_upload_is_resized_by_the_model_and_searched(demo_runs, tmp_path):
    patchcore, _ = demo_runs
    loaded = _model(patchcore)
    gray = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (60, 100), dtype=np.uint8), (5, 5), 0)
    ok, png = cv2.imencode(".png", gray)
    assert ok
    rgb = images.read_image(png.tobytes(), name="part.png")  # what an upload goes through
    assert rgb.shape == (60, 100, 3)

    info, hits = embeddings.similar(patchcore, loaded, rgb, using="global", k=3)

    assert len(hits) == 3
    assert info["anomaly_map"].shape == (loaded.image_size, loaded.image_size)
    for using in ("global", "defect"):
        assert np.linalg.norm(info[using]) == pytest.approx(1.0, abs=1e-4)


def test_a_run_indexes_the_vectors_its_test_pass_and_fit_pooled_instead_of_running_the_model_again(demo_runs):
    patchcore, efficientad = demo_runs
    pc = RunRegistry().get(patchcore)
    # PatchCore: test images from the test pass, training images from the fit's features: every vector reused
    assert pc.retrieval["reused_vectors"] == pc.retrieval["points"]
    assert pc.timings["index_s"] > 0 and pc.timings["timing_s"] > 0  # each phase's seconds are on the run
    # EfficientAD keeps no training features: its test vectors are reused, its training images get a backbone pass
    ea = RunRegistry().get(efficientad)
    n_test = len(RunArtifacts(settings().run_dir(efficientad)).records)
    assert ea.retrieval["reused_vectors"] == n_test < ea.retrieval["points"]


def test_the_stored_test_vectors_are_what_a_fresh_scoring_pass_computes(demo_runs):
    patchcore, _ = demo_runs
    art = RunArtifacts(settings().run_dir(patchcore))
    stored = art.vectors()
    paths = [str(p) for p in stored["test_paths"][:4]]

    g, d, scores, _ = embeddings.embed(_model(patchcore), [images.read_image(p) for p in paths])

    assert paths == [str(p) for p in art.records["path"][:4]]
    np.testing.assert_allclose((g * stored["test_global"][:4]).sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose((d * stored["test_defect"][:4]).sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores, art.records["score"][:4], rtol=1e-5)


def test_a_run_without_stored_vectors_is_indexed_by_running_its_model_with_the_same_test_precision(demo_runs_copy):
    patchcore, _ = demo_runs_copy
    art = RunArtifacts(settings().run_dir(patchcore))
    before = RunRegistry().get(patchcore).retrieval
    art.vectors_path.unlink()  # a run from before vectors were stored

    result = embeddings.index_run(patchcore, _model(patchcore))

    assert result["reused_vectors"] == 0
    assert result["points"] == before["points"]
    for using in ("global", "defect"):
        for k in (1, 5):
            assert _at(result[using]["same_defect_type"], k) == pytest.approx(_at(before[using]["same_defect_type"], k))
