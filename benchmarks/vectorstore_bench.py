"""Similarity-index engines side by side: Qdrant Edge (the embedded default) vs qdrant-client local mode (the
fallback), at 1k / 10k / 100k / 1M points, through ``core.similarity.vectorstore`` exactly as the product uses it.

    .venv/bin/python benchmarks/vectorstore_bench.py [--sizes 1000,10000,100000,1000000] [--dim 152]
        [--data clustered random] [--local-up-to 10000] [--queries 200]

Points: unit vectors in two named vectors ("global", "defect") of the product's dimensionality (152 =
PatchCore on the bundled EfficientNet-Lite0, the offline default), with the product's payload; 1 in 5 anomalous.
``--data clustered`` (families of similar images, as real embeddings come; queries are new members of the same
families) and ``random`` (uniform on the sphere, queries too: no point is much nearer than another, the worst case
for an approximate index). Local mode runs on the first kind only (it always scans).
Each engine and size runs in a fresh child process (so its peak RSS is its own) in a temporary folder.

Columns:
- *index*: ``index_run`` of all points (Edge: upsert, payload indexes, then ``optimize()`` building HNSW);
- *cold open*: open the store and answer one query, as a page does for one search (lock, open, query, close);
- *warm* / *warm, filtered*: p50 / p95 over ``--queries`` queries inside ``VectorStore.hold`` (opened once);
  filtered = ``run_id`` + ``label=1`` + ``split=test``, the Similar-cases page's "anomalous neighbours" query;
- *recall@10*: the share of the exact top 10 (a full scan of the same store) that the default search returns,
  over 50 queries, filtered and unfiltered (local mode always scans, so 1.0);
- *RSS*: the child process's peak resident memory (Python, numpy and the engine); *disk*: blocks the store's
  folder really uses (Edge preallocates sparse files whose apparent size is far larger).
Local mode above ``--local-up-to`` is not run: it keeps every point as a Python object and writes one SQLite row
per point (10,000 points already take about a minute to index), so the table says so instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", message="Local mode is not recommended")

RUN = "bench-run"


def data(n: int, dim: int, seed: int = 0, chunk: int = 100_000, kind: str = "clustered"):
    """(vectors, payloads) in chunks, so 1 M points never need two copies in memory.

    ``clustered`` (default): like the product's embeddings, images come in families (one product, one camera, one
    kind of defect look alike): each point is one of ``n / 100`` family centres plus noise a third of its size, so
    a query has true neighbours. ``random``: unit vectors uniform on the sphere, every point about equally far
    from every query: the worst case for any approximate index (reported as such)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).standard_normal((max(10, n // 100), dim)).astype(np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        vectors = {}
        for name in ("global", "defect"):
            v = rng.standard_normal((m, dim), dtype=np.float32)
            if kind == "clustered":
                v = centres[rng.integers(0, len(centres), m)] + 0.35 * v
            vectors[name] = v / np.linalg.norm(v, axis=1, keepdims=True)
        payloads = [
            dict(
                dataset="mvtec_ad",
                category="grid",
                split="test" if i % 3 else "train",
                label=int(i % 5 == 0),
                defect_type="crack" if i % 5 == 0 else "good",
                image_path=f"/data/{i:07d}.png",
                score=0.5,
                index=i,
            )
            for i in range(start, start + m)
        ]
        yield vectors, payloads


def _queries(n: int, dim: int, count: int, kind: str) -> np.ndarray:
    """Query vectors: new images from the same distribution as the ``n`` stored points (other random draws)."""
    rng = np.random.default_rng(1)
    v = rng.standard_normal((count, dim), dtype=np.float32)
    if kind == "clustered":
        centres = np.random.default_rng(1234).standard_normal((max(10, n // 100), dim)).astype(np.float32)
        v = centres[rng.integers(0, len(centres), count)] + 0.35 * v
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pct(times: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.array(times) * 1000, [50, 95])
    return float(p50), float(p95)


def child(engine: str, n: int, dim: int, queries: int, folder: Path, kind: str = "clustered") -> dict:
    """One engine at one size, in this (child) process."""
    from core.engine.latency import peak_rss_mb
    from core.similarity.vectorstore import VectorStore, collection_name

    store = VectorStore(path=folder, engine=engine)
    coll = collection_name("bench", "random", dim)
    t = time.perf_counter()
    if n <= 100_000:
        vectors, payloads = next(data(n, dim, chunk=n, kind=kind))
        store.index_run(RUN, coll, vectors, payloads)
    else:  # one run of 1 M points: index_run replaces a run, so larger sets go in as runs of 100k
        for i, (vectors, payloads) in enumerate(data(n, dim, kind=kind)):
            store.index_run(f"{RUN}-{i}" if i else RUN, coll, vectors, payloads)
    index_s = time.perf_counter() - t
    q = _queries(n, dim, max(queries, 50), kind)
    row = {"engine": engine, "n": n, "data": kind, "index_s": index_s, "points_per_s": n / index_s}
    cold = []
    for i in range(5):
        fresh = VectorStore(path=folder, engine=engine)
        t = time.perf_counter()
        fresh.search(coll, q[i], k=10)
        cold.append(time.perf_counter() - t)
    row["cold_ms"] = float(np.median(cold) * 1000)
    with store.hold(coll):
        warm, filtered = [], []
        for i in range(queries):
            t = time.perf_counter()
            store.search(coll, q[i], k=10)
            warm.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.search(coll, q[i], using="defect", k=10, run_id=RUN, label=1, split="test")
            filtered.append(time.perf_counter() - t)
        row["warm"], row["filtered"] = pct(warm), pct(filtered)
        recalls = {"all": [], "filtered": []}
        for i in range(50):
            for key, kw in (("all", {}), ("filtered", {"run_id": RUN, "label": 1, "split": "test"})):
                got = {h.id for h in store.search(coll, q[i], k=10, **kw)}
                exact = {h.id for h in store.search(coll, q[i], k=10, exact=True, **kw)}
                recalls[key].append(len(got & exact) / max(1, len(exact)))
        row["recall_all"], row["recall_filtered"] = float(np.mean(recalls["all"])), float(np.mean(recalls["filtered"]))
    row["rss_mb"] = peak_rss_mb()
    # blocks actually used: Edge's files are sparse (preallocated mmaps read as ~200 MB, hold a few MB at 1k points)
    row["disk_mb"] = sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file()) / 1e6
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=152)
    parser.add_argument("--local-up-to", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--data",
        nargs="+",
        default=["clustered", "random"],
        choices=["clustered", "random"],
        help="clustered: families of similar images, like real embeddings; random: uniform on the "
        "sphere, the worst case for HNSW",
    )
    parser.add_argument("--child", nargs=5, metavar=("ENGINE", "N", "DIM", "FOLDER", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, n, dim, folder, kind = args.child
        print(json.dumps(child(engine, int(n), int(dim), args.queries, Path(folder), kind)))
        return 0

    rows = []
    for n, kind, engine in [
        (int(s), kind, engine) for s in args.sizes.split(",") for kind in args.data for engine in ("edge", "local")
    ]:
        if engine == "local" and (n > args.local_up_to or kind != args.data[0]):
            if n > args.local_up_to and kind == args.data[0]:
                rows.append({"engine": engine, "n": n, "data": kind, "skipped": True})
            continue  # local mode scans everything: its recall is 1 on any data, its time the same
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--queries",
                    str(args.queries),
                    "--child",
                    engine,
                    str(n),
                    str(args.dim),
                    str(Path(tmp) / "qdrant"),
                    kind,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  {engine} n={n:,} {kind}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)

    print(f"\n{args.dim}-d unit vectors x 2 named vectors per point; latency in ms; k = 10.\n")
    print(
        "| engine | data | points | index (s) | points/s | cold open + 1 query (ms) | warm p50 / p95 | "
        "warm filtered p50 / p95 | recall@10 (all / filtered) | peak RSS (MB) | disk (MB) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"edge": "Qdrant Edge", "local": "qdrant-client local mode"}
    for r in rows:
        if r.get("skipped"):
            print(f"| {names[r['engine']]} | {r['data']} | {r['n']:,} | not run (see above) | | | | | | | |")
            continue
        print(
            f"| {names[r['engine']]} | {r['data']} | {r['n']:,} | {r['index_s']:.1f} | {r['points_per_s']:,.0f} | "
            f"{r['cold_ms']:.1f} | {r['warm'][0]:.2f} / {r['warm'][1]:.2f} | "
            f"{r['filtered'][0]:.2f} / {r['filtered'][1]:.2f} | {r['recall_all']:.3f} / {r['recall_filtered']:.3f} | "
            f"{r['rss_mb']:,.0f} | {r['disk_mb']:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
