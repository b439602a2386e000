"""Similarity-gallery speed: indexing throughput and query latency of ``core.vectorstore`` in embedded local mode.

    .venv/bin/python benchmarks/vectorstore_bench.py [--sizes 1000,10000,50000] [--dim 512]

Random unit vectors, two named vectors ("global", "defect") per point, one run per size, in a temporary folder.
Rows:
- ``local`` – persistent folder, as the app uses it; WAL + synchronous=NORMAL (see core/vectorstore.py).
- ``local, default SQLite`` – the same without that tuning (qdrant-client's own settings), small sizes only.
- ``:memory:`` – no persistence, for reference.
Latency columns: *cold* = one ``search`` as the app does it (lock, open the folder = load every point, query,
close); *warm* = queries inside ``VectorStore.hold`` (folder opened once); *warm, filtered* adds a run_id + label
filter, which local mode evaluates in Python per point.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core.vectorstore as vs  # noqa: E402
from core.vectorstore import VectorStore, collection_name  # noqa: E402

warnings.filterwarnings("ignore", message="Local mode is not recommended")  # we are measuring exactly that


def data(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = {name: rng.standard_normal((n, dim), dtype=np.float32) for name in ("global", "defect")}
    for v in vectors.values():
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    payloads = [
        dict(dataset="mvtec_ad", category="grid", split="test" if i % 3 else "train", label=int(i % 5 == 0),
             defect_type="crack" if i % 5 == 0 else "good", image_path=f"/data/{i:06d}.png", score=0.5, index=i)
        for i in range(n)
    ]
    return vectors, payloads


def latencies(fn, repeats: int) -> tuple[float, float]:
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    p50, p95 = np.percentile(np.array(times) * 1000, [50, 95])
    return float(p50), float(p95)


def measure(store: VectorStore, n: int, dim: int, cold_queries: int, warm_queries: int) -> dict:
    vectors, payloads = data(n, dim)
    coll = collection_name("bench", "random", dim)
    queries = np.random.default_rng(1).standard_normal((max(cold_queries, warm_queries), dim)).astype(np.float32)
    t = time.perf_counter()
    store.index_run("bench-run", coll, vectors, payloads)
    index_s = time.perf_counter() - t
    row = {"n": n, "index_s": index_s, "points_per_s": n / index_s}
    if store.root is not None:
        row["cold"] = latencies(lambda i: store.search(coll, queries[i], k=10), cold_queries)
        row["disk_mb"] = sum(f.stat().st_size for f in (store.root / coll).rglob("*") if f.is_file()) / 1e6
    with store.hold(coll):
        assert store.count("bench-run", coll) == n
        row["warm"] = latencies(lambda i: store.search(coll, queries[i], k=10), warm_queries)
        row["warm_filtered"] = latencies(
            lambda i: store.search(coll, queries[i], using="defect", k=10, run_id="bench-run", label=1),
            warm_queries,
        )
    return row


def fmt(pair: tuple[float, float] | None) -> str:
    return "–" if pair is None else f"{pair[0]:.1f} / {pair[1]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--untuned-up-to", type=int, default=1000, help="largest size for the default-SQLite row")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    started = time.perf_counter()
    tune = vs._tune_local
    for n in sizes:
        cold, warm = (20, 100) if n <= 10000 else (2, 10)  # a cold open of 50k points takes seconds
        configs = [("local", True), ("local, default SQLite", False), (":memory:", None)]
        for label, tuned in configs:
            if tuned is False and n > args.untuned_up_to:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                vs._tune_local = tune if tuned is not False else (lambda client: None)
                store = VectorStore(path=":memory:" if tuned is None else Path(tmp) / "qdrant")
                try:
                    row = measure(store, n, args.dim, cold, warm)
                finally:
                    store.close()
                    vs._tune_local = tune
            rows.append((label, row))
            print(f"  {label} n={n}: indexed in {row['index_s']:.2f} s", file=sys.stderr, flush=True)
    print(f"\n{args.dim}-d random unit vectors × 2 named vectors per point; latency in ms, p50 / p95, k=10, over "
          "20 cold / 100 warm queries (2 / 10 above 10,000 points).\n")
    print("| store | points | index time (s) | points/s | cold search | warm search | warm, filtered | disk (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        disk = f"{r['disk_mb']:.0f}" if "disk_mb" in r else "–"
        print(f"| {label} | {r['n']:,} | {r['index_s']:.2f} | {r['points_per_s']:,.0f} | {fmt(r.get('cold'))} "
              f"| {fmt(r['warm'])} | {fmt(r['warm_filtered'])} | {disk} |")
    rss = psutil.Process().memory_info().rss / 1e9
    print(f"\nTotal {time.perf_counter() - started:.0f} s; process RSS at the end {rss:.1f} GB.")


if __name__ == "__main__":
    main()
