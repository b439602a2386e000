"""Similarity gallery on the real embedded engines (no mocks, no server): Qdrant Edge, the default, and
qdrant-client's local mode, the fallback where Edge can't be installed. Every behaviour test runs on both; the
server code path (qdrant-client's API, as a server is driven) is exercised through its in-memory mode."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import portalocker
import pytest
from qdrant_client import QdrantClient

from core.config import PROJECT_ROOT, settings
from core.errors import VectorStoreError
from core.similarity.vectorstore import VectorStore, collection_name, loo_neighbours, point_id

DIM = 32
COLL = collection_name("PatchCore", "wide_resnet50_2", DIM)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered_run(seed: int = 0, noise: float = 0.05):
    """20 normal train images, and a test split of 10 normal, 6 'crack' and 6 'scratch' images.

    Each group is a tight cluster around its own random direction; "defect" vectors use other directions.
    """
    rng = np.random.default_rng(seed)
    groups = [("train", 0, "good", 20), ("test", 0, "good", 10), ("test", 1, "crack", 6), ("test", 1, "scratch", 6)]
    centres = {name: unit(rng.standard_normal((2, DIM))) for name in ("good", "crack", "scratch")}
    g, d, payloads = [], [], []
    for split, label, defect, n in groups:
        c = centres[defect]
        g.append(unit(c[0] + noise * rng.standard_normal((n, DIM))))
        d.append(unit(c[1] + noise * rng.standard_normal((n, DIM))))
        payloads += [
            dict(
                dataset="mvtec_ad",
                category="grid",
                split=split,
                label=label,
                defect_type=defect,
                image_path=f"/data/{split}/{defect}/{len(payloads) + i:03d}.png",
                score=float(label),
            )
            for i in range(n)
        ]
    return {"global": np.concatenate(g), "defect": np.concatenate(d)}, payloads, centres


@pytest.fixture(params=["edge", "local"])
def store(artifacts: Path, request) -> VectorStore:
    return VectorStore(path=settings().qdrant_path, engine=request.param)


@pytest.fixture
def indexed(store: VectorStore):
    vectors, payloads, centres = clustered_run()
    assert store.index_run("run-a", COLL, vectors, payloads) == len(payloads)
    return vectors, payloads, centres


def test_the_embedded_store_lives_under_artifacts_and_edge_is_the_default(store: VectorStore, indexed) -> None:
    assert VectorStore.open().engine == "edge"
    assert store.local and store.root == settings().qdrant_path
    marker = {"edge": Path("edge") / COLL / "edge_config.json", "local": Path(COLL) / "meta.json"}[store.engine]
    assert (settings().qdrant_path / marker).is_file()
    assert store.collections() == [COLL]
    assert COLL == "patchcore-wide_resnet50_2-32"
    assert collection_name("Padim", "resnet18.a1_in1k", 448) == "padim-resnet18_a1_in1k-448"


def test_defective_query_finds_same_label_and_defect_type(store: VectorStore, indexed) -> None:
    vectors, payloads, centres = indexed
    query = unit(centres["crack"][0] + 0.05 * np.random.default_rng(9).standard_normal(DIM))
    hits = store.search(COLL, query, using="global", k=5, run_id="run-a")
    assert len(hits) == 5 and all(h.payload["label"] == 1 and h.payload["defect_type"] == "crack" for h in hits)
    assert hits[0].score > 0.8 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # the defect-centred space has its own neighbours
    hits = store.search(COLL, vectors["defect"][-1], using="defect", k=3, run_id="run-a")
    assert hits[0].payload["index"] == len(payloads) - 1 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(h.payload["defect_type"] == "scratch" for h in hits)


def test_payload_filters(store: VectorStore, indexed) -> None:
    vectors, payloads, centres = indexed
    query = centres["crack"][0]
    normal = store.search(COLL, query, k=50, label="normal")
    assert len(normal) == 30 and {h.payload["label"] for h in normal} == {0}
    assert len(store.search(COLL, query, k=50, label=0, split="test")) == 10
    scratches = store.search(COLL, query, k=50, defect_type="scratch")
    assert len(scratches) == 6 and {h.payload["defect_type"] for h in scratches} == {"scratch"}
    assert {h.payload["split"] for h in store.search(COLL, query, k=50, split="train")} == {"train"}
    # leave the query image out of its own results
    i = 25
    hits = store.search(COLL, vectors["global"][i], k=50, run_id="run-a", exclude_index=i)
    assert len(hits) == len(payloads) - 1 and i not in {h.payload["index"] for h in hits}
    assert hits[0].id != point_id("run-a", i)
    # filters that match nothing give no hits, not an error
    assert store.search(COLL, query, run_id="run-a", defect_type="hole") == []


def test_reindexing_replaces_points(store: VectorStore, indexed) -> None:
    vectors, payloads, _ = indexed
    store.index_run("run-a", COLL, vectors, payloads)
    assert store.count("run-a") == store.count() == len(payloads)
    # a shorter re-index leaves no stale points behind
    store.index_run("run-a", COLL, {k: v[:5] for k, v in vectors.items()}, payloads[:5])
    assert store.count("run-a", COLL) == 5


def test_delete_run_removes_it_everywhere(store: VectorStore, indexed) -> None:
    vectors, payloads, _ = indexed
    other = collection_name("Padim", "resnet18", DIM)
    store.index_run("run-a", other, vectors, payloads)
    store.index_run("run-b", COLL, vectors, payloads)
    assert store.count("run-a") == 2 * len(payloads)
    assert store.delete_run("run-a") == 2 * len(payloads)
    assert not store.is_indexed("run-a") and store.is_indexed("run-b", COLL)
    assert store.count() == len(payloads)
    with pytest.raises(VectorStoreError, match="run run-a has no similarity index"):
        store.search(COLL, vectors["global"][0], run_id="run-a")


def test_clear_errors(store: VectorStore, indexed, monkeypatch) -> None:
    vectors, payloads, _ = indexed
    with pytest.raises(VectorStoreError, match="run never has no similarity index .*`aw index never`"):
        store.search(COLL, vectors["global"][0], run_id="never")
    with pytest.raises(VectorStoreError, match="run x has no similarity index"):
        store.search(collection_name("EfficientAd", "small", 384), np.ones(384), run_id="x")
    with pytest.raises(VectorStoreError, match="dimension 16, .* expects 32"):
        store.search(COLL, np.ones(16))
    with pytest.raises(VectorStoreError, match="NaN"):
        store.search(COLL, np.full(DIM, np.nan))
    with pytest.raises(VectorStoreError, match="NaN"):
        store.index_run("run-c", COLL, {"global": np.full((1, DIM), np.nan)}, payloads[:1])
    with pytest.raises(VectorStoreError, match="dimension 32, got 16"):
        store.index_run("run-c", COLL, {"global": np.ones((1, 16))}, payloads[:1])
    with pytest.raises(VectorStoreError, match="split"):
        store.index_run("run-c", COLL, {"global": np.ones((1, DIM))}, [dict(payloads[0], split="val")])
    with pytest.raises(VectorStoreError, match="collection name"):
        store.search("../etc", np.ones(DIM))
    assert not store.is_indexed("run-c")


def test_unreachable_server_is_a_clear_error(artifacts: Path, monkeypatch) -> None:
    monkeypatch.setenv("AW_QDRANT_URL", "http://127.0.0.1:9")
    with pytest.raises(VectorStoreError, match=r"Qdrant server at http://127.0.0.1:9 failed: .*AW_QDRANT_URL"):
        VectorStore.open()
    remote = VectorStore(url="http://127.0.0.1:9", timeout=1)
    with pytest.raises(VectorStoreError, match="127.0.0.1:9"):
        remote.search(COLL, np.ones(DIM), run_id="x")
    with pytest.raises(VectorStoreError, match="127.0.0.1:9"):
        remote.index_run("x", COLL, {"global": np.ones((1, DIM))}, [dict(split="test", label=0)])


def test_busy_store_times_out_clearly(store: VectorStore, indexed) -> None:
    impatient = VectorStore(path=store.root, engine=store.engine, lock_timeout=0.2)
    with portalocker.Lock(store.lock_file(COLL), mode="a", timeout=1), pytest.raises(VectorStoreError, match="busy"):
        impatient.count(collection=COLL)
    assert impatient.count(collection=COLL) == 42


def test_hold_keeps_one_client_open(store: VectorStore, indexed) -> None:
    vectors, _, _ = indexed
    folder = store.root / "edge" / COLL if store.engine == "edge" else store.root / COLL

    def open_directly():
        if store.engine == "edge":
            from qdrant_edge import EdgeShard

            EdgeShard.load(str(folder)).close()
        else:
            QdrantClient(path=str(folder)).close()

    with store.hold(COLL):
        assert store.count(collection=COLL) == 42
        assert store.search(COLL, vectors["global"][0], k=1)[0].payload["index"] == 0
        # the folder really is held: another opener is refused meanwhile (the engines allow one at a time)
        with pytest.raises((RuntimeError, Exception), match="already accessed|WAL"):
            open_directly()
    open_directly()


_INDEX_WORKER = """
import sys, time
from core.similarity.vectorstore import VectorStore
from tests.similarity.test_vectorstore import COLL, clustered_run
root, run_id, seed, start_at, engine = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
vectors, payloads, _ = clustered_run(seed)
store = VectorStore(path=root, engine=engine)
time.sleep(max(0.0, start_at - time.time()))  # start together, so the two really contend for the folder
for _ in range(3):
    store.index_run(run_id, COLL, vectors, payloads)
    store.search(COLL, vectors["global"][0], run_id=run_id)
"""


def test_two_processes_index_the_same_folder(store: VectorStore) -> None:
    # Separate interpreters (not multiprocessing): nothing of this test process is inherited or re-imported.
    start_at = str(time.time() + 8)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _INDEX_WORKER, str(store.root), f"run-{i}", str(i), start_at, store.engine],
            cwd=PROJECT_ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert store.count("run-1", COLL) == store.count("run-2", COLL) == 42
    assert store.count(collection=COLL) == 84  # both runs, nothing lost or doubled


def _angles(degrees: list[float]) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad), np.zeros_like(rad)], axis=1)


def test_precision_at_k_hand_checked(store: VectorStore) -> None:
    # test images on a circle: A 0°, B 10° normal; C 90° crack, D 100° scratch, E 85° crack; plus a train image
    # at 1° that must not take part. Neighbours: A: B E C D | B: A E C D | C: E D B A | D: C E B A | E: C D B A
    coll = collection_name("toy", "circle", 3)
    rows = [(0, 0, "good"), (10, 0, "good"), (90, 1, "crack"), (100, 1, "scratch"), (85, 1, "crack")]
    payloads = [dict(split="test", label=lab, defect_type=d) for _, lab, d in rows]
    payloads.append(dict(split="train", label=0, defect_type="good"))
    vectors = _angles([a for a, _, _ in rows] + [1])
    store.index_run("toy", coll, {"global": vectors}, payloads)
    p = store.precision_at_k(coll, "toy", using="global", ks=(1, 2, 4, 10))
    assert p["n"] == 5 and p["n_anomalous"] == 3
    # same label @1: all 5 right; @2: A,B 1/2, C,D,E 2/2 → 4/5; @4: A,B 1/4, C,D,E 2/4 → 2/5;
    # @10 = @4 (only 4 others)
    assert p["same_label"] == pytest.approx({1: 1.0, 2: 0.8, 4: 0.4, 10: 0.4})
    # same defect type, anomalous queries only: @1 C→E ✓, D→C ✗, E→C ✓ → 2/3; @2: C 1/2, D 0, E 1/2 → 1/3;
    # @4: C 1/4, D 0, E 1/4 → 1/6
    assert p["same_defect_type"] == pytest.approx({1: 2 / 3, 2: 1 / 3, 4: 1 / 6, 10: 1 / 6})


def test_numpy_ranking_matches_qdrant(store: VectorStore) -> None:
    rng = np.random.default_rng(3)
    n, k = 30, 6
    x = rng.standard_normal((n, 16))
    labels = rng.integers(0, 2, n)
    payloads = [dict(split="test", label=int(lab), defect_type="good" if lab == 0 else "crack") for lab in labels]
    coll = collection_name("toy", "random", 16)
    store.index_run("rnd", coll, {"global": x}, payloads)

    ours = loo_neighbours(unit(x).astype(np.float32), k)
    with store.hold(coll):
        for i in range(n):
            hits = store.search(coll, x[i], k=k, run_id="rnd", split="test", exclude_index=i)
            assert [h.payload["index"] for h in hits] == list(ours[i])
            sims = unit(x[ours[i]]) @ unit(x[i])
            assert [h.score for h in hits] == pytest.approx(sims, abs=1e-5)
        p = store.precision_at_k(coll, "rnd", ks=(1, k))
    assert p["same_label"][k] == pytest.approx(float((labels[ours] == labels[:, None]).mean()))


# ---- Qdrant Edge specifics -------------------------------------------------------------------------------


def test_edge_builds_an_hnsw_index_once_a_shard_grows_and_keeps_payload_indexes(artifacts: Path) -> None:
    from qdrant_edge import EdgeShard

    from core.similarity.vectorstore import INDEXED_FIELDS, INDEXING_THRESHOLD_KB

    store = VectorStore(path=settings().qdrant_path, engine="edge")
    rng = np.random.default_rng(5)
    dim = 512  # the product's vectors are a few hundred dimensions: the threshold is ~2,000 images
    coll = collection_name("PatchCore", "wide_resnet50_2", dim)
    n = INDEXING_THRESHOLD_KB * 1024 // (dim * 4) + 500  # past the threshold of each vector's storage
    x = unit(rng.standard_normal((n, dim)))
    payloads = [dict(split="train", label=0, defect_type="good") for _ in range(n)]
    store.index_run("big", coll, {"global": x, "defect": x[::-1].copy()}, payloads)
    shard = EdgeShard.load(str(settings().qdrant_path / "edge" / coll))
    try:
        info = shard.info()
        assert info.points_count == n and info.indexed_vectors_count > 0
        assert set(info.payload_schema) == set(INDEXED_FIELDS)
    finally:
        shard.close()
    # HNSW answers like an exact scan here
    hnsw = [h.id for h in store.search(coll, x[7], k=10, run_id="big")]
    exact = [h.id for h in store.search(coll, x[7], k=10, run_id="big", exact=True)]
    assert len(set(hnsw) & set(exact)) >= 9


def test_the_embedded_store_pushes_to_a_server_through_the_client_api(store: VectorStore, indexed) -> None:
    vectors, payloads, centres = indexed
    server = VectorStore(path=":memory:")  # qdrant-client's API, as the product drives a server
    assert store.push(server) == {COLL: len(payloads)}
    assert store.push(server) == {COLL: len(payloads)}  # again: overwritten, not doubled
    assert server.count("run-a", COLL) == len(payloads)
    query = centres["crack"][0]
    assert [h.id for h in server.search(COLL, query, k=5, run_id="run-a")] == [
        h.id for h in store.search(COLL, query, k=5, run_id="run-a")
    ]


def test_pushing_to_an_unreachable_server_is_a_clear_error(store: VectorStore, indexed) -> None:
    with pytest.raises(VectorStoreError, match="Qdrant server at http://127.0.0.1:9 failed"):
        store.push_to_server("http://127.0.0.1:9", timeout=1)
