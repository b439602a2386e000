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

Storage. Without ``AW_QDRANT_URL`` the store is qdrant-client's embedded *local mode*, one folder per collection
under ``settings().qdrant_path``. Local mode lets only one client open a folder at a time and loads the whole
folder into memory on opening, so every operation opens the client inside a cross-process file lock and closes it
afterwards: the Streamlit app and the training workers take turns instead of failing, and a search only loads its
own embedding space. Opening costs roughly 0.1 s per 1,000 points (unpickling), so local mode suits collections
up to ~10,000 points; ``VectorStore.hold(collection)`` keeps one collection open across several calls.
With a server URL the same calls go to one shared HTTP client and no lock is needed.

Write speed. qdrant-client 1.20 local mode stores each point as one SQLite row and commits once *per point*
(``local/persistence.py``); in SQLite's default rollback-journal mode with ``synchronous=FULL`` every commit is
several fsyncs. We switch each collection's SQLite file to ``journal_mode=WAL`` + ``synchronous=NORMAL``: commits
no longer fsync (the WAL is synced at checkpoints), which SQLite documents as corruption-safe; a power cut can
only roll back the last few commits, and re-indexing a run is idempotent. See ``benchmarks/vectorstore_bench.py``.
"""

from __future__ import annotations

import gc
import re
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

from core.config import Settings, settings as current_settings
from core.errors import VectorStoreError

VECTOR_NAMES = ("global", "defect")
SPLITS = ("train", "test")
PAYLOAD_FIELDS = ("run_id", "dataset", "category", "split", "label", "defect_type", "image_path", "score", "index")
# What the user is told to do when a run has no index (core/cli.py's "index" command).
INDEX_HINT = "index it with `python -m core index {run_id}`"

_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "anomaly-workbench/vectorstore")
_NAME_RE = re.compile(r"^[a-z0-9_]+-[a-z0-9_]+-[0-9]+$")
_LABELS = {"normal": 0, "good": 0, "anomalous": 1, "abnormal": 1}
_BATCH = 256  # points per upsert request: bounds request size on a server and memory for .tolist()


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
    """Qdrant-backed similarity gallery; see the module docstring for layout and concurrency."""

    def __init__(
        self,
        path: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: int = 5,
        lock_timeout: float = 60.0,
    ) -> None:
        """``path``: embedded store folder (or ``":memory:"``, one client for this object's life, for benchmarks);
        ``url``/``api_key``: a Qdrant server instead. ``timeout``: seconds per server request;
        ``lock_timeout``: how long to wait for another process using the embedded store."""
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path or url")
        self.url = url
        self.root = None if path is None or str(path) == ":memory:" else Path(path)
        self.lock_timeout = lock_timeout
        self._thread = threading.local()  # .held: collections this thread keeps open (see hold())
        self._shared: QdrantClient | None = None
        if url is not None:
            # check_compatibility would make a request (and warn) before we can report a clear error
            self._shared = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        elif self.root is None:
            self._shared = QdrantClient(location=":memory:")

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

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()

    # ---------------------------------------------------------------- connections

    @contextmanager
    def _connect(self, collection: str, create: bool = False) -> Iterator[QdrantClient | None]:
        """A client that can see ``collection``, or None if it does not exist (unless ``create``).

        Turns lock time-outs, server failures and local-mode's "folder in use" into VectorStoreError.
        """
        _check_name(collection)
        try:
            held = self._holding()
            if collection in held:
                yield held[collection]
            elif self._shared is not None:
                exists = self._shared.collection_exists(collection)
                yield self._shared if (exists or create) else None
            else:
                folder = self.root / collection
                if not create and not (folder / "meta.json").is_file():
                    yield None  # don't create folders (or wait for locks) just to learn nothing is there
                    return
                folder.mkdir(parents=True, exist_ok=True)
                with self._locked(folder), self._local_client(folder) as client:
                    yield client if (create or client.collection_exists(collection)) else None
        except ApiException as exc:
            raise self._server_error(exc) from exc

    def _server_error(self, exc: ApiException) -> VectorStoreError:
        return VectorStoreError(
            f"Qdrant server at {self.url} failed: {_reason(exc)}. Check that it runs and that "
            "AW_QDRANT_URL/AW_QDRANT_API_KEY are right, or unset AW_QDRANT_URL to use the embedded store."
        )

    @contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        # flock on our own file (not qdrant's .lock, which QdrantLocal takes non-blocking and fails on): waiters
        # queue here; the OS drops the lock if a process dies, so a crash never leaves the store locked.
        lock = portalocker.Lock(folder / "workbench.lock", mode="a", timeout=self.lock_timeout, check_interval=0.05)
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
        """Keep ``collection`` open for the calls inside the block (one load instead of one per call).

        Other processes and threads wait meanwhile, so keep the block short. No effect on a server or ``:memory:``.
        """
        held = self._holding()
        if collection in held or self.root is None:
            yield
            return
        with self._connect(collection) as client:
            if client is None:  # nothing to keep open; calls inside fail or create as usual
                yield
                return
            held[collection] = client
            try:
                yield
            finally:
                del held[collection]

    def _holding(self) -> dict[str, QdrantClient]:
        # per thread: a local client must not be shared by Streamlit's script threads
        if not hasattr(self._thread, "held"):
            self._thread.held = {}
        return self._thread.held

    def collections(self) -> list[str]:
        """Names of the collections this store holds (on a server, only those named by ``collection_name``)."""
        if self.root is not None:
            if not self.root.is_dir():
                return []
            names = [p.name for p in self.root.iterdir() if (p / "meta.json").is_file()]
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
        collection are deleted first; in local mode under the same lock, so readers never see a half-replaced run.
        """
        _check_run_id(run_id)
        arrays = _check_vectors(vectors, len(payloads))
        points = [_payload(run_id, i, p) for i, p in enumerate(payloads)]
        ids = [point_id(run_id, p["index"]) for p in points]
        if len(set(ids)) != len(ids):
            raise VectorStoreError(f"payload 'index' values of run {run_id} are not unique")

        with self._connect(collection, create=True) as client:
            if not client.collection_exists(collection):
                try:
                    self._create(client, collection, {name: a.shape[1] for name, a in arrays.items()})
                except ApiException:
                    if not client.collection_exists(collection):  # else a server client created it meanwhile
                        raise
            expected = _vector_sizes(client, collection)
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
            client.delete(collection, _filter(run_id=run_id), wait=True)
            for start in range(0, len(points), _BATCH):
                stop = start + _BATCH
                batch = models.Batch(
                    ids=ids[start:stop],
                    vectors={name: a[start:stop].tolist() for name, a in arrays.items()},
                    payloads=points[start:stop],
                )
                client.upsert(collection, batch, wait=True)
        return len(points)

    def _create(self, client: QdrantClient, collection: str, sizes: dict[str, int]) -> None:
        client.create_collection(
            collection,
            vectors_config={n: models.VectorParams(size=d, distance=models.Distance.COSINE) for n, d in sizes.items()},
        )
        if self.local:
            _tune_local(client)  # the new collection's SQLite file was opened just now
            return  # local mode ignores payload indexes (and warns about them)
        for field, schema in (
            ("run_id", models.PayloadSchemaType.KEYWORD),
            ("split", models.PayloadSchemaType.KEYWORD),
            ("label", models.PayloadSchemaType.INTEGER),
            ("defect_type", models.PayloadSchemaType.KEYWORD),
        ):
            client.create_payload_index(collection, field, field_schema=schema, wait=True)

    def delete_run(self, run_id: str) -> int:
        """Remove the run's points from every collection; returns how many were removed."""
        _check_run_id(run_id)
        removed = 0
        for collection in self.collections():
            with self._connect(collection) as client:
                if client is None:
                    continue
                n = client.count(collection, count_filter=_filter(run_id=run_id), exact=True).count
                if n:
                    client.delete(collection, _filter(run_id=run_id), wait=True)
                    removed += n
        return removed

    # ---------------------------------------------------------------- reading

    def count(self, run_id: str | None = None, collection: str | None = None) -> int:
        """Points of ``run_id`` (or all) in ``collection`` (or all collections)."""
        total = 0
        for name in [collection] if collection else self.collections():
            with self._connect(name) as client:
                if client is not None:
                    total += client.count(name, count_filter=_filter(run_id=run_id), exact=True).count
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
    ) -> list[Hit]:
        """The ``k`` most similar points, best first, optionally restricted by payload.

        ``exclude_index`` drops image ``exclude_index`` of ``run_id`` (the query image itself), so it needs ``run_id``.
        """
        if k < 1:
            raise VectorStoreError(f"k must be at least 1, got {k}")
        if exclude_index is not None and run_id is None:
            raise VectorStoreError("exclude_index needs run_id: it names an image of that run")
        query = _check_query(vector)
        flt = _filter(run_id=run_id, label=label, defect_type=defect_type, split=split, exclude_index=exclude_index)
        with self._connect(collection) as client:
            if client is None:
                raise _not_indexed(run_id, collection)
            sizes = _vector_sizes(client, collection)
            if using not in sizes:
                raise VectorStoreError(f"collection {collection} has no {using!r} vectors (it holds {sorted(sizes)})")
            if query.shape[0] != sizes[using]:
                raise VectorStoreError(
                    f"query vector has dimension {query.shape[0]}, collection {collection} expects "
                    f"{sizes[using]} for {using!r}"
                )
            points = client.query_points(
                collection, query=query.tolist(), using=using, limit=k, query_filter=flt, with_payload=True
            ).points
            if not points and run_id is not None:
                # nothing matched: tell "filters too narrow" (empty list) apart from "run never indexed" (error)
                if client.count(collection, count_filter=_filter(run_id=run_id), exact=True).count == 0:
                    raise _not_indexed(run_id, collection)
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    def run_vectors(
        self, collection: str, run_id: str, using: str = "global", split: str | None = None
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """All ``using`` vectors of a run (unit length, (N, D), ordered by ``index``) and their payloads."""
        flt = _filter(run_id=run_id, split=split)
        rows: list[tuple[int, list[float], dict[str, Any]]] = []
        with self._connect(collection) as client:
            if client is None:
                raise _not_indexed(run_id, collection)
            if using not in _vector_sizes(client, collection):
                raise VectorStoreError(f"collection {collection} has no {using!r} vectors")
            offset = None
            while True:  # one open, few round trips: scroll pages of 1,024
                page, offset = client.scroll(
                    collection, scroll_filter=flt, limit=1024, offset=offset, with_payload=True, with_vectors=[using]
                )
                rows += [(p.payload["index"], p.vector[using], p.payload) for p in page]
                if offset is None:
                    break
            if not rows and client.count(collection, count_filter=_filter(run_id=run_id), exact=True).count == 0:
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
        unit vectors, which is what Qdrant ranks by, so the neighbours are the same as N Qdrant searches would give
        (tested), at the cost of one fetch. Exact ties are broken by ``index`` (Qdrant may order them otherwise).
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
            "using": using, "split": split, "n": n, "n_anomalous": int(anomalous.sum()),
            "same_label": {}, "same_defect_type": {},
        }
        for k in ks:
            kk = min(k, n - 1)
            result["same_label"][k] = float(same_label[:, :kk].mean())
            result["same_defect_type"][k] = float(same_defect[anomalous, :kk].mean()) if anomalous.any() else None
        return result


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


def _filter(
    run_id: str | None = None,
    label: int | str | None = None,
    defect_type: str | None = None,
    split: str | None = None,
    exclude_index: int | None = None,
) -> models.Filter | None:
    must = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in (
            ("run_id", run_id),
            ("label", None if label is None else normalize_label(label)),
            ("defect_type", defect_type),
            ("split", split),
        )
        if value is not None
    ]
    must_not = [] if exclude_index is None else [models.HasIdCondition(has_id=[point_id(run_id, exclude_index)])]
    return models.Filter(must=must, must_not=must_not) if must or must_not else None


def _vector_sizes(client: QdrantClient, collection: str) -> dict[str, int]:
    params = client.get_collection(collection).config.params.vectors
    return {name: p.size for name, p in params.items()} if isinstance(params, dict) else {"": params.size}


def _not_indexed(run_id: str | None, collection: str) -> VectorStoreError:
    if run_id is None:
        return VectorStoreError(f"collection {collection} does not exist: no run has been indexed in it yet")
    return VectorStoreError(
        f"run {run_id} has no similarity index in {collection}; {INDEX_HINT.format(run_id=run_id)}"
    )


def _reason(exc: ApiException) -> str:
    source = getattr(exc, "source", None)  # ResponseHandlingException wraps the httpx error
    if source is not None:
        return f"{type(source).__name__}: {source}"
    status = getattr(exc, "status_code", None)
    return f"HTTP {status} {getattr(exc, 'reason_phrase', '')}".strip() if status else str(exc) or type(exc).__name__

