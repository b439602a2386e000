"""Similarity gallery: per-image embeddings of a run in Qdrant, queried for the nearest normal/anomalous cases.

Each image of a run (train and test split) is one Qdrant point holding two L2-normalised named vectors,
``"global"`` (whole image) and ``"defect"`` (patch features pooled with anomaly-map weights), and a payload:

| field | type | meaning |
|---|---|---|
| run_id | str | the run that produced the embeddings (set by ``index_run``) |
| dataset, category | str | e.g. ``"mvtec_ad"``, ``"grid"`` |
| split | ``"train"`` / ``"test"`` | |
| label | int | **0 = normal, 1 = anomalous** (anomalib's ``gt_label``); input may also say "normal"/"anomalous" |
| defect_type | str | MVTec folder name, ``"good"`` for normal images |
| image_path | str | |
| score | float or None | the run's anomaly score for the image |
| index | int | position of the image within the run; with ``run_id`` it makes the point id |

One collection per embedding space, named by ``collection_name(model, backbone, dim)``; cosine distance.

Engines, one interface (everything above the store is the same for all three):

- **Qdrant Edge** (``qdrant-edge-py``), the default embedded engine: Qdrant's own Rust engine in this process. One
  Edge *shard* per embedding space under ``settings().qdrant_path / "edge" / <collection>``, with payload indexes
  on ``run_id``, ``split``, ``label``, ``defect_type`` and an HNSW index that the shard's optimiser builds once a
  segment grows past its indexing threshold (``optimize()`` after each indexing). Opening a shard maps its files
  (milliseconds, whatever its size), so every operation opens it inside a cross-process file lock and closes it
  afterwards; an Edge shard accepts one opener at a time (its write-ahead log is locked), so one writer or reader
  works at a time and the others wait for the lock, up to ``lock_timeout`` seconds, then get a clear "busy" error.
  ``VectorStore.hold(collection)`` keeps one shard open across several calls.
- **A Qdrant server** (``AW_QDRANT_URL``, ``AW_QDRANT_API_KEY``): the same calls over qdrant-client's HTTP client;
  the server handles concurrency. ``push_to_server`` copies the embedded store to one (``aw index
  push URL``).
- **qdrant-client local mode** (pure Python, ``engine="local"``): kept for the benchmarks that compare it with
  Edge (Edge is pinned in requirements.txt, so ``"auto"`` is Edge). One folder per collection under
  ``settings().qdrant_path``; it loads the whole collection on opening (~0.1 s per 1,000 points), so it suits
  collections up to ~10,000 points. Its SQLite files are switched to ``journal_mode=WAL`` +
  ``synchronous=NORMAL`` (it commits once per point).
"""

from __future__ import annotations

import gc
import json
import logging
import re
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import portalocker
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ApiException

from core.config import Settings
from core.config import settings as current_settings
from core.errors import VectorStoreError

log = logging.getLogger("workbench.vectorstore")

VECTOR_NAMES = ("global", "defect")
SPLITS = ("train", "test")
PAYLOAD_FIELDS = ("run_id", "dataset", "category", "split", "label", "defect_type", "image_path", "score", "index")
# What the user is told to do when a run has no index (core/cli/serve.py's "index" command).
INDEX_HINT = "index it with `aw index {run_id}`"

_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "anomaly-workbench/vectorstore")
_NAME_RE = re.compile(r"^[a-z0-9_]+-[a-z0-9_]+-[0-9]+$")
_LABELS = {"normal": 0, "good": 0, "anomalous": 1, "abnormal": 1}
_BATCH = 256  # points per upsert request: bounds request size on a server and memory for .tolist()
EDGE_DIR = "edge"  # Edge shards live in <qdrant_path>/edge/<collection>
INDEXED_FIELDS = {"run_id": "keyword", "split": "keyword", "label": "integer", "defect_type": "keyword"}
# HNSW search breadth. recall@10 against exact search at 100k points (benchmarks/vectorstore_bench.py): 1.000 on
# clustered data like real embeddings; 0.37 unfiltered on uniform random vectors, the worst case (README).
HNSW_EF = 128
# Segments above this many KB of vectors get an HNSW index (~1,000 images of 2 x 512-d); below it a full scan is
# well under a millisecond.
INDEXING_THRESHOLD_KB = 4000


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is the cosine similarity (1 = same direction)."""

    id: str
    score: float
    payload: dict[str, Any]


def collection_name(model: str, backbone: str, dim: int) -> str:
    """Collection for one embedding space (sanitised to ``[a-z0-9_]`` parts joined by ``-``).

    ``("Patchcore", "wide_resnet50_2", 1536)`` → ``"patchcore-wide_resnet50_2-1536"``.
    """

    def clean(part: str, what: str) -> str:
        text = re.sub(r"[^a-z0-9]+", "_", str(part).lower()).strip("_")
        if not text:
            raise VectorStoreError(f"cannot name a collection after {what} {part!r}: it has no letters or digits")
        return text

    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
        raise VectorStoreError(f"embedding dimension must be a positive integer, got {dim!r}")
    return f"{clean(model, 'model')}-{clean(backbone, 'backbone')}-{int(dim)}"


def point_id(run_id: str, index: int) -> str:
    """Deterministic point id, so re-indexing a run overwrites instead of duplicating."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{run_id}/{int(index)}"))


def normalize_label(value: Any) -> int:
    """0 (normal) or 1 (anomalous) from 0/1, a bool or ``"normal"``/``"anomalous"``."""
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    if isinstance(value, (bool, int, np.integer)) and int(value) in (0, 1):
        return int(value)
    raise VectorStoreError(f"label must be 0/1 or 'normal'/'anomalous', got {value!r}")


class VectorStore:
    """Qdrant-backed similarity gallery; see the module docstring for engines, layout and concurrency."""

    def __init__(
        self,
        path: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        *,
        engine: str = "auto",
        timeout: int = 5,
        lock_timeout: float = 60.0,
    ) -> None:
        """``path``: embedded store folder (or ``":memory:"``, one local-mode client for this object's life, for
        benchmarks); ``url``/``api_key``: a Qdrant server instead. ``engine`` (embedded only): ``"edge"``,
        ``"local"`` (qdrant-client local mode) or ``"auto"`` (Edge). ``timeout``: seconds per
        server request; ``lock_timeout``: how long to wait for another process using the embedded store."""
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path or url")
        if engine not in ("auto", "edge", "local"):
            raise ValueError(f"engine must be auto, edge or local, got {engine!r}")
        self.url = url
        self.root = None if path is None or str(path) == ":memory:" else Path(path)
        self.lock_timeout = lock_timeout
        self._thread = threading.local()  # .held: collections this thread keeps open (see hold())
        self._shared: QdrantClient | None = None
        self.engine = "server"
        if url is not None:
            # check_compatibility would make a request (and warn) before we can report a clear error
            self._shared = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        elif self.root is None:
            self._shared = QdrantClient(location=":memory:")
            self.engine = "memory"
        elif engine == "local":
            self.engine = "local"
        else:
            self.engine = "edge"

    @classmethod
    def open(cls, settings: Settings | None = None) -> VectorStore:
        """The store the settings name; a server URL is checked at once so a wrong one fails here, clearly."""
        s = settings or current_settings()
        if s.qdrant_url:
            store = cls(url=s.qdrant_url, api_key=s.qdrant_api_key)
            store.collections()  # raises VectorStoreError if unreachable
            return store
        return cls(path=s.qdrant_path)

    @property
    def local(self) -> bool:
        return self.url is None

    @property
    def engine_note(self) -> str:
        """One line for the pages: which engine holds the index and where."""
        return {
            "edge": f"Qdrant Edge (embedded) at {self.root}",
            "local": f"qdrant-client local mode at {self.root} (Qdrant Edge is not available on this platform)",
            "memory": "in memory",
            "server": f"Qdrant server at {self.url}",
        }[self.engine]

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()

    # ---------------------------------------------------------------- connections

    def _folder(self, collection: str) -> Path:
        return self.root / EDGE_DIR / collection if self.engine == "edge" else self.root / collection

    def _on_disk(self, collection: str) -> bool:
        folder = self._folder(collection)
        return (folder / ("edge_config.json" if self.engine == "edge" else "meta.json")).is_file()

    @contextmanager
    def _connect(self, collection: str, create: bool = False) -> Iterator[_Collection | None]:
        """The collection, or None if it does not exist (unless ``create``: then it may still need ``create()``).

        Turns lock time-outs, server failures and engine errors into VectorStoreError.
        """
        _check_name(collection)
        try:
            held = self._holding()
            if collection in held:
                yield held[collection]
            elif self._shared is not None:
                coll = _ClientCollection(self._shared, collection, server=self.url is not None)
                yield coll if (create or coll.exists()) else None
            else:
                if not create and not self._on_disk(collection):
                    yield None  # don't create folders (or wait for locks) just to learn nothing is there
                    return
                folder = self._folder(collection)
                folder.mkdir(parents=True, exist_ok=True)
                with self._locked(folder), self._open_embedded(collection, folder) as coll:
                    yield coll if (create or coll.exists()) else None
        except ApiException as exc:
            raise self._server_error(exc) from exc

    def _server_error(self, exc: ApiException) -> VectorStoreError:
        return VectorStoreError(
            f"Qdrant server at {self.url} failed: {_reason(exc)}. Check that it runs and that "
            "AW_QDRANT_URL/AW_QDRANT_API_KEY are right, or unset AW_QDRANT_URL to use the embedded store."
        )

    @contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        # flock on our own file (not the engine's own locks, which fail at once instead of waiting): waiters
        # queue here; the OS drops the lock if a process dies, so a crash never leaves the store locked.
        lock = portalocker.Lock(self.lock_file(folder.name), mode="a", timeout=self.lock_timeout, check_interval=0.05)
        try:
            lock.acquire()
        except portalocker.exceptions.LockException as exc:
            raise VectorStoreError(
                f"the similarity index at {folder} has been busy for {self.lock_timeout:.0f} s "
                "(another process is indexing or searching); try again later"
            ) from exc
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _open_embedded(self, collection: str, folder: Path) -> Iterator[_Collection]:
        if self.engine == "edge":
            coll = _EdgeCollection(folder, collection)
            try:
                yield coll
            finally:
                coll.close()
            return
        with self._local_client(folder) as client:
            yield _ClientCollection(client, collection, server=False)

    @contextmanager
    def _local_client(self, folder: Path) -> Iterator[QdrantClient]:
        # Opening unpickles every point into Python lists; the cyclic GC keeps rescanning those new containers,
        # which roughly doubles the load time of large collections. Nothing here makes cycles, so pause it.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            client = QdrantClient(path=str(folder))
        except RuntimeError as exc:  # "already accessed by another instance": opened outside VectorStore
            raise VectorStoreError(f"the similarity index at {folder} is open in another program: {exc}") from exc
        finally:
            if gc_was_enabled:
                gc.enable()
        try:
            _tune_local(client)
            yield client
        finally:
            client.close()

    @contextmanager
    def hold(self, collection: str) -> Iterator[None]:
        """Keep ``collection`` open for the calls inside the block (one open instead of one per call).

        Other processes and threads wait meanwhile, so keep the block short. No effect on a server or ``:memory:``.
        """
        held = self._holding()
        if collection in held or self.root is None:
            yield
            return
        with self._connect(collection) as coll:
            if coll is None:  # nothing to keep open; calls inside fail or create as usual
                yield
                return
            held[collection] = coll
            try:
                yield
            finally:
                del held[collection]

    def _holding(self) -> dict[str, _Collection]:
        # per thread: an embedded collection must not be shared by Streamlit's script threads
        if not hasattr(self._thread, "held"):
            self._thread.held = {}
        return self._thread.held

    def collections(self) -> list[str]:
        """Names of the collections this store holds (on a server, only those named by ``collection_name``)."""
        if self.root is not None:
            base = self.root / EDGE_DIR if self.engine == "edge" else self.root
            if not base.is_dir():
                return []
            names = [p.name for p in base.iterdir() if p.is_dir() and self._on_disk(p.name)]
        else:
            try:
                names = [c.name for c in self._shared.get_collections().collections]
            except ApiException as exc:
                raise self._server_error(exc) from exc
        return sorted(n for n in names if _NAME_RE.match(n))

    # ---------------------------------------------------------------- writing

    def index_run(
        self,
        run_id: str,
        collection: str,
        vectors: Mapping[str, np.ndarray],
        payloads: Sequence[Mapping[str, Any]],
    ) -> int:
        """Store (or replace) all embeddings of a run; returns the number of points written.

        ``vectors`` maps ``"global"``/``"defect"`` to (N, D) arrays, row i belonging to ``payloads[i]``. The first
        run indexed into a collection fixes its vector names and dimensions. Existing points of the run in this
        collection are deleted first, under the same lock, so readers never see a half-replaced run.
        """
        _check_run_id(run_id)
        arrays = _check_vectors(vectors, len(payloads))
        points = [_payload(run_id, i, p) for i, p in enumerate(payloads)]
        ids = [point_id(run_id, p["index"]) for p in points]
        if len(set(ids)) != len(ids):
            raise VectorStoreError(f"payload 'index' values of run {run_id} are not unique")

        with self._connect(collection, create=True) as coll:
            if not coll.exists():
                try:
                    coll.create({name: a.shape[1] for name, a in arrays.items()})
                except ApiException:
                    if not coll.exists():  # else a server client created it meanwhile
                        raise
            expected = coll.vector_sizes()
            for name, array in arrays.items():
                if name not in expected:
                    raise VectorStoreError(
                        f"collection {collection} has no {name!r} vectors (it holds {sorted(expected)})"
                    )
                if array.shape[1] != expected[name]:
                    raise VectorStoreError(
                        f"collection {collection} stores {name!r} vectors of dimension {expected[name]}, "
                        f"got {array.shape[1]}"
                    )
            coll.delete(_spec(run_id=run_id))
            coll.upsert(ids, arrays, points)
            coll.settle()
        return len(points)

    def delete_run(self, run_id: str) -> int:
        """Remove the run's points from every collection; returns how many were removed."""
        _check_run_id(run_id)
        removed = 0
        for collection in self.collections():
            with self._connect(collection) as coll:
                if coll is None:
                    continue
                n = coll.count(_spec(run_id=run_id))
                if n:
                    coll.delete(_spec(run_id=run_id))
                    removed += n
        return removed

    def push_to_server(self, url: str, api_key: str | None = None, timeout: int = 30, progress=None) -> dict[str, int]:
        """Copy the embedded store to the Qdrant server at ``url`` (see ``push``)."""
        if not self.local or self.root is None:
            raise VectorStoreError("only an embedded store can be pushed to a server; this one is already a server")
        target = VectorStore(url=url, api_key=api_key, timeout=timeout)
        try:
            target.collections()  # a clear error now if the server can't be reached
            return self.push(target, progress=progress)
        finally:
            target.close()

    def push(self, target: VectorStore, progress=None) -> dict[str, int]:
        """Copy every collection into ``target`` (same names, vectors, payloads; payload indexes created on a
        server). Points with the same ids are overwritten, so pushing again is harmless. {collection: points}."""
        pushed = {}
        for collection in self.collections():
            with self._connect(collection) as source:
                if source is None:
                    continue
                sizes = source.vector_sizes()
                with target._connect(collection, create=True) as dest:
                    if not dest.exists():
                        dest.create(sizes)
                    elif dest.vector_sizes() != sizes:
                        raise VectorStoreError(
                            f"{collection} on the target holds vectors {dest.vector_sizes()}, "
                            f"the local one {sizes}: not pushed"
                        )
                    n = 0
                    for ids, arrays, payloads in source.batches(_BATCH):
                        dest.upsert(ids, arrays, payloads)
                        n += len(ids)
                        if progress:
                            progress(collection, n)
                    dest.settle()
            pushed[collection] = n
        return pushed

    def lock_file(self, collection: str) -> Path:
        """The file an embedded collection's users queue on (see ``_locked``)."""
        folder = self._folder(collection)
        return folder.parent / f"{folder.name}.lock" if self.engine == "edge" else folder / "workbench.lock"

    # ---------------------------------------------------------------- reading

    def count(self, run_id: str | None = None, collection: str | None = None) -> int:
        """Points of ``run_id`` (or all) in ``collection`` (or all collections)."""
        total = 0
        for name in [collection] if collection else self.collections():
            with self._connect(name) as coll:
                if coll is not None:
                    total += coll.count(_spec(run_id=run_id))
        return total

    def is_indexed(self, run_id: str, collection: str | None = None) -> bool:
        """Whether the run has points (in ``collection``, or anywhere: that opens every collection)."""
        return self.count(run_id=run_id, collection=collection) > 0

    def search(
        self,
        collection: str,
        vector: np.ndarray,
        using: str = "global",
        k: int = 5,
        run_id: str | None = None,
        label: int | str | None = None,
        defect_type: str | None = None,
        split: str | None = None,
        exclude_index: int | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` most similar points, best first, optionally restricted by payload.

        ``exclude_index`` drops image ``exclude_index`` of ``run_id`` (the query image itself), so it needs ``run_id``.
        ``exact``: a full scan instead of the HNSW index (the reference for recall measurements).
        """
        if k < 1:
            raise VectorStoreError(f"k must be at least 1, got {k}")
        if exclude_index is not None and run_id is None:
            raise VectorStoreError("exclude_index needs run_id: it names an image of that run")
        query = _check_query(vector)
        spec = _spec(run_id=run_id, label=label, defect_type=defect_type, split=split, exclude_index=exclude_index)
        with self._connect(collection) as coll:
            if coll is None:
                raise _not_indexed(run_id, collection)
            sizes = coll.vector_sizes()
            if using not in sizes:
                raise VectorStoreError(f"collection {collection} has no {using!r} vectors (it holds {sorted(sizes)})")
            if query.shape[0] != sizes[using]:
                raise VectorStoreError(
                    f"query vector has dimension {query.shape[0]}, collection {collection} expects "
                    f"{sizes[using]} for {using!r}"
                )
            hits = coll.query(query, using, k, spec, exact=exact)
            # nothing matched: tell "filters too narrow" (empty list) apart from "run never indexed" (error)
            if not hits and run_id is not None and coll.count(_spec(run_id=run_id)) == 0:
                raise _not_indexed(run_id, collection)
        return hits

    def run_vectors(
        self, collection: str, run_id: str, using: str = "global", split: str | None = None
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """All ``using`` vectors of a run (unit length, (N, D), ordered by ``index``) and their payloads."""
        spec = _spec(run_id=run_id, split=split)
        with self._connect(collection) as coll:
            if coll is None:
                raise _not_indexed(run_id, collection)
            if using not in coll.vector_sizes():
                raise VectorStoreError(f"collection {collection} has no {using!r} vectors")
            rows = [(p["index"], v, p) for p, v in coll.scroll(spec, using)]
            if not rows and coll.count(_spec(run_id=run_id)) == 0:
                raise _not_indexed(run_id, collection)
        rows.sort(key=lambda r: r[0])
        x = np.asarray([r[1] for r in rows], dtype=np.float32)
        return (_unit_rows(x) if rows else np.zeros((0, 0), np.float32)), [r[2] for r in rows]

    def precision_at_k(
        self,
        collection: str,
        run_id: str,
        using: str = "global",
        ks: Sequence[int] = (1, 5, 10),
        split: str = "test",
    ) -> dict[str, Any]:
        """Leave-one-out retrieval quality of a run's embeddings.

        Every ``split`` image of the run queries the run's other ``split`` images. ``same_label[k]`` is the mean
        fraction of its k nearest neighbours with the query's label, over all queries; ``same_defect_type[k]`` the
        same for the defect type, over **anomalous queries only** (for normal queries it would repeat
        ``same_label``); None when the split has no anomalous image. With fewer than k other images, the fraction is
        taken over all of them (k is clamped to N-1).

        Computed with numpy on the vectors fetched once (``run_vectors``): cosine similarity is the dot product of
        unit vectors, which is what Qdrant ranks by, so the neighbours are the same as N exact Qdrant searches
        would give (tested), at the cost of one fetch. Exact ties are broken by ``index``.
        """
        if not ks or min(ks) < 1:
            raise VectorStoreError(f"ks must be positive integers, got {ks!r}")
        x, payloads = self.run_vectors(collection, run_id, using=using, split=split)
        n = len(payloads)
        if n < 2:
            raise VectorStoreError(f"run {run_id} has {n} {split} image(s) in the index; need at least 2")
        labels = np.array([normalize_label(p["label"]) for p in payloads])
        defects = np.array([str(p.get("defect_type")) for p in payloads], dtype=object)
        kmax = min(max(ks), n - 1)
        order = loo_neighbours(x, kmax)
        same_label = labels[order] == labels[:, None]
        same_defect = defects[order] == defects[:, None]
        anomalous = labels == 1
        result: dict[str, Any] = {
            "using": using,
            "split": split,
            "n": n,
            "n_anomalous": int(anomalous.sum()),
            "same_label": {},
            "same_defect_type": {},
        }
        for k in ks:
            kk = min(k, n - 1)
            result["same_label"][k] = float(same_label[:, :kk].mean())
            result["same_defect_type"][k] = float(same_defect[anomalous, :kk].mean()) if anomalous.any() else None
        return result


# -------------------------------------------------------------------- one collection, per engine


class _Collection:
    """What VectorStore needs of one collection; ``spec`` is a plain filter dict (``_spec``)."""

    def exists(self) -> bool: ...
    def create(self, sizes: dict[str, int]) -> None: ...
    def vector_sizes(self) -> dict[str, int]: ...
    def upsert(self, ids: list[str], arrays: dict[str, np.ndarray], payloads: list[dict]) -> None: ...
    def delete(self, spec: dict) -> None: ...
    def count(self, spec: dict) -> int: ...
    def query(self, vector: np.ndarray, using: str, k: int, spec: dict, exact: bool = False) -> list[Hit]: ...
    def scroll(self, spec: dict, using: str) -> list[tuple[dict, list[float]]]: ...
    def batches(self, size: int) -> Iterator[tuple[list[str], dict[str, np.ndarray], list[dict]]]: ...

    def settle(self) -> None:
        """After writing: let the engine build its indexes."""


class _ClientCollection(_Collection):
    """A collection through qdrant-client: a server, local mode or ``:memory:``."""

    def __init__(self, client: QdrantClient, name: str, server: bool) -> None:
        self.client, self.name, self.server = client, name, server

    def exists(self) -> bool:
        return self.client.collection_exists(self.name)

    def create(self, sizes: dict[str, int]) -> None:
        self.client.create_collection(
            self.name,
            vectors_config={n: models.VectorParams(size=d, distance=models.Distance.COSINE) for n, d in sizes.items()},
        )
        if not self.server:
            _tune_local(self.client)  # the new collection's SQLite file was opened just now
            return  # local mode ignores payload indexes (and warns about them)
        schemas = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER}
        for field, kind in INDEXED_FIELDS.items():
            self.client.create_payload_index(self.name, field, field_schema=schemas[kind], wait=True)

    def vector_sizes(self) -> dict[str, int]:
        params = self.client.get_collection(self.name).config.params.vectors
        return {name: p.size for name, p in params.items()} if isinstance(params, dict) else {"": params.size}

    def upsert(self, ids, arrays, payloads) -> None:
        for start in range(0, len(ids), _BATCH):
            stop = start + _BATCH
            batch = models.Batch(
                ids=ids[start:stop],
                vectors={n: a[start:stop].tolist() for n, a in arrays.items()},
                payloads=payloads[start:stop],
            )
            self.client.upsert(self.name, batch, wait=True)

    def delete(self, spec: dict) -> None:
        self.client.delete(self.name, _client_filter(**spec), wait=True)

    def count(self, spec: dict) -> int:
        return self.client.count(self.name, count_filter=_client_filter(**spec), exact=True).count

    def query(self, vector, using, k, spec, exact=False) -> list[Hit]:
        points = self.client.query_points(
            self.name,
            query=vector.tolist(),
            using=using,
            limit=k,
            query_filter=_client_filter(**spec),
            with_payload=True,  # local mode always scans exactly (and warns about search parameters)
            search_params=models.SearchParams(exact=exact, hnsw_ef=HNSW_EF) if self.server else None,
        ).points
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    def scroll(self, spec, using):
        rows, offset = [], None
        while True:  # one open, few round trips: pages of 1,024
            page, offset = self.client.scroll(
                self.name,
                scroll_filter=_client_filter(**spec),
                limit=1024,
                offset=offset,
                with_payload=True,
                with_vectors=[using],
            )
            rows += [(dict(p.payload), p.vector[using]) for p in page]
            if offset is None:
                return rows

    def batches(self, size):
        offset = None
        while True:
            page, offset = self.client.scroll(
                self.name, limit=size, offset=offset, with_payload=True, with_vectors=True
            )
            if page:
                yield _as_batch([(str(p.id), p.vector, p.payload) for p in page])
            if offset is None:
                return


class _EdgeCollection(_Collection):
    """A collection as one Qdrant Edge shard (a folder); opened on construction if it exists, closed by ``close``."""

    def __init__(self, folder: Path, name: str) -> None:
        from qdrant_edge import EdgeShard  # qdrant_edge: a 35 MB native library, for the Edge engine only

        self.folder, self.name = folder, name
        self.shard = None
        if (folder / "edge_config.json").is_file():
            try:
                self.shard = EdgeShard.load(str(folder))
            except Exception as exc:  # noqa: BLE001 - the engine reports everything as Exception
                raise VectorStoreError(f"the similarity index at {folder} could not be opened: {exc}") from exc

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None

    def exists(self) -> bool:
        return self.shard is not None

    def create(self, sizes: dict[str, int]) -> None:
        import qdrant_edge as qe  # qdrant_edge: a 35 MB native library, for the Edge engine only

        if any(self.folder.iterdir()):  # a half-created shard (a crash mid-create): start again
            shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True)
        config = qe.EdgeConfig(
            vectors={n: qe.EdgeVectorParams(size=d, distance=qe.Distance.Cosine) for n, d in sizes.items()},
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
        )
        self.shard = qe.EdgeShard.create(str(self.folder), config)
        kinds = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}
        for field, kind in INDEXED_FIELDS.items():
            self.shard.update(qe.UpdateOperation.create_field_index(field, kinds[kind]))

    def vector_sizes(self) -> dict[str, int]:
        config = json.loads((self.folder / "edge_config.json").read_text())
        return {name: int(v["size"]) for name, v in config["vectors"].items()}

    def upsert(self, ids, arrays, payloads) -> None:
        import qdrant_edge as qe  # qdrant_edge: a 35 MB native library, for the Edge engine only

        lists = {n: a.tolist() for n, a in arrays.items()}
        for start in range(0, len(ids), 1024):
            points = [
                qe.Point(id=ids[i], vector={n: lists[n][i] for n in lists}, payload=payloads[i])
                for i in range(start, min(len(ids), start + 1024))
            ]
            self.shard.update(qe.UpdateOperation.upsert_points(points))

    def settle(self) -> None:
        self.shard.optimize()  # builds HNSW once a segment is past the indexing threshold; no-op otherwise
        self.shard.flush()

    def delete(self, spec: dict) -> None:
        import qdrant_edge as qe  # qdrant_edge: a 35 MB native library, for the Edge engine only

        flt = _edge_filter(**spec)
        if flt is None:
            raise VectorStoreError("refusing to delete every point of a collection without a filter")
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(flt))

    def count(self, spec: dict) -> int:
        import qdrant_edge as qe  # qdrant_edge: a 35 MB native library, for the Edge engine only

        return int(self.shard.count(qe.CountRequest(exact=True, filter=_edge_filter(**spec))))

    def query(self, vector, using, k, spec, exact=False) -> list[Hit]:
        import qdrant_edge as qe  # qdrant_edge: a 35 MB native library, for the Edge engine only

        points = self.shard.query(
            qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(vector.tolist(), using=using),
                filter=_edge_filter(**spec),
                with_payload=True,
                params=qe.SearchParams(hnsw_ef=HNSW_EF, exact=exact),
            )
        )
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    def _pages(self, spec: dict | None, with_vector, size: int = 1024):
        import qdrant_edge as qe  # qdrant_edge: a 35 MB native library, for the Edge engine only

        offset = None
        flt = _edge_filter(**spec) if spec else None
        while True:
            page, offset = self.shard.scroll(
                qe.ScrollRequest(offset=offset, limit=size, filter=flt, with_payload=True, with_vector=with_vector)
            )
            yield page
            if offset is None or not page:
                return

    def scroll(self, spec, using):
        return [(dict(r.payload), r.vector[using]) for page in self._pages(spec, [using]) for r in page]

    def batches(self, size):
        for page in self._pages(None, True, size):
            if page:
                yield _as_batch([(str(r.id), r.vector, r.payload) for r in page])


def _as_batch(rows: list[tuple[str, dict, dict]]) -> tuple[list[str], dict[str, np.ndarray], list[dict]]:
    names = list(rows[0][1])
    return (
        [r[0] for r in rows],
        {n: np.asarray([r[1][n] for r in rows], dtype=np.float32) for n in names},
        [dict(r[2] or {}) for r in rows],
    )


def loo_neighbours(x: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """(N, k) row positions of each row's k most cosine-similar *other* rows of unit vectors ``x``, best first."""
    n = x.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):  # blocks keep the similarity matrix at block × N
        sim = x[start : start + block] @ x.T
        rows = np.arange(sim.shape[0])
        sim[rows, rows + start] = -np.inf  # leave the query itself out
        # stable sort on -sim: equal scores keep index order, so results are deterministic
        out[start : start + block] = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return out


# -------------------------------------------------------------------- helpers


def _tune_local(client: QdrantClient) -> None:
    """WAL + synchronous=NORMAL on every local collection's SQLite file (see module docstring).

    Reaches into qdrant-client internals (QdrantLocal.collections[..].storage.storage is the sqlite3 connection);
    if they change, indexing just gets slower again.
    """
    for collection in getattr(getattr(client, "_client", None), "collections", {}).values():
        connection = getattr(getattr(collection, "storage", None), "storage", None)
        if connection is None:
            continue
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:  # e.g. a file system without shared memory: keep SQLite's defaults
            pass


def _check_name(collection: str) -> None:
    # also keeps local-mode folder names inside the store
    if not isinstance(collection, str) or not _NAME_RE.match(collection):
        raise VectorStoreError(f"{collection!r} is not a collection name; make one with collection_name()")


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not run_id.strip():
        raise VectorStoreError(f"run_id must be a non-empty string, got {run_id!r}")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


def _check_vectors(vectors: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    if not vectors:
        raise VectorStoreError(f"no vectors given; expected some of {VECTOR_NAMES}")
    arrays = {}
    for name, value in vectors.items():
        if name not in VECTOR_NAMES:
            raise VectorStoreError(f"unknown vector name {name!r}; expected some of {VECTOR_NAMES}")
        a = np.asarray(value, dtype=np.float32)
        if a.ndim != 2 or a.shape[0] != n or a.shape[1] == 0:
            raise VectorStoreError(f"{name!r} vectors must have shape ({n}, D) for {n} payloads, got {a.shape}")
        if not np.isfinite(a).all():
            raise VectorStoreError(f"{name!r} vectors contain NaN or infinite values")
        if n and (np.linalg.norm(a, axis=1) == 0).any():
            raise VectorStoreError(f"{name!r} vectors contain all-zero rows, which have no cosine similarity")
        arrays[name] = a
    return arrays


def _check_query(vector: np.ndarray) -> np.ndarray:
    q = np.asarray(vector, dtype=np.float32)
    if q.ndim == 2 and q.shape[0] == 1:
        q = q[0]
    if q.ndim != 1:
        raise VectorStoreError(f"query must be one vector (D,), got shape {q.shape}")
    if not np.isfinite(q).all():
        raise VectorStoreError("query vector contains NaN or infinite values")
    if not q.any():
        raise VectorStoreError("query vector is all zeros, which has no cosine similarity")
    return q


def _payload(run_id: str, position: int, given: Mapping[str, Any]) -> dict[str, Any]:
    payload = {field: None for field in PAYLOAD_FIELDS} | dict(given)
    payload["run_id"] = run_id
    payload["index"] = int(position if payload["index"] is None else payload["index"])
    if payload["split"] not in SPLITS:
        raise VectorStoreError(f"payload {position}: split must be one of {SPLITS}, got {payload['split']!r}")
    payload["label"] = normalize_label(payload["label"])
    # plain JSON types: numpy scalars and Paths would fail serialisation deep inside qdrant-client
    if payload["score"] is not None:
        payload["score"] = float(payload["score"])
    for field in ("dataset", "category", "defect_type", "image_path"):
        if payload[field] is not None:
            payload[field] = str(payload[field])
    return payload


def _spec(
    run_id: str | None = None,
    label: int | str | None = None,
    defect_type: str | None = None,
    split: str | None = None,
    exclude_index: int | None = None,
) -> dict:
    """A payload filter as plain data, turned into each engine's filter type by ``_client_filter``/``_edge_filter``."""
    return {
        "run_id": run_id,
        "label": None if label is None else normalize_label(label),
        "defect_type": defect_type,
        "split": split,
        "exclude_id": None if exclude_index is None else point_id(run_id, exclude_index),
    }


def _must(spec: dict) -> list[tuple[str, Any]]:
    return [(key, spec[key]) for key in ("run_id", "label", "defect_type", "split") if spec.get(key) is not None]


def _client_filter(**spec) -> models.Filter | None:
    must = [models.FieldCondition(key=key, match=models.MatchValue(value=value)) for key, value in _must(spec)]
    must_not = [] if spec.get("exclude_id") is None else [models.HasIdCondition(has_id=[spec["exclude_id"]])]
    return models.Filter(must=must, must_not=must_not) if must or must_not else None


def _edge_filter(**spec):
    import qdrant_edge as qe  # qdrant_edge: a 35 MB native library, for the Edge engine only

    must = [qe.FieldCondition(key=key, match=qe.MatchValue(value)) for key, value in _must(spec)]
    must_not = [] if spec.get("exclude_id") is None else [qe.HasIdCondition({uuid.UUID(spec["exclude_id"])})]
    return qe.Filter(must=must or None, must_not=must_not or None) if must or must_not else None


def _not_indexed(run_id: str | None, collection: str) -> VectorStoreError:
    if run_id is None:
        return VectorStoreError(f"collection {collection} does not exist: no run has been indexed in it yet")
    return VectorStoreError(f"run {run_id} has no similarity index in {collection}; {INDEX_HINT.format(run_id=run_id)}")


def _reason(exc: ApiException) -> str:
    source = getattr(exc, "source", None)  # ResponseHandlingException wraps the httpx error
    if source is not None:
        return f"{type(source).__name__}: {source}"
    status = getattr(exc, "status_code", None)
    return f"HTTP {status} {getattr(exc, 'reason_phrase', '')}".strip() if status else str(exc) or type(exc).__name__
