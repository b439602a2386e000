"""PatchCore coreset selection on real MVTec AD grid features: anomalib's KCenterGreedy vs FastKCenterGreedy.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python benchmarks/coreset_bench.py [--images N] [--ratios 0.01,0.1,0.25]

1. Extracts PatchCore features of ``../shared/datasets/mvtec_ad/grid/train/good`` with anomalib's
   ``PatchcoreModel`` (EfficientNet-Lite0 from ``../shared/weights``, layers blocks.2 + blocks.4, 256x256,
   mean = std = 0.5) in train mode, exactly as a PatchCore fit collects its memory bank.
2. Times anomalib's sampler for ``--stock-iters`` iterations only (its own methods, its own loop body) and
   extrapolates linearly to each coreset size (every stock iteration costs the same: a full pass over all
   patches); then runs FastKCenterGreedy to completion for each ratio.
3. Checks that FastKCenterGreedy's indices equal the stock ones on the stock prefix (same seed).

Each sampler runs in its own process so that its peak RSS (``ru_maxrss``) is its own.
Prints one markdown table. Exits 0 with a message when the dataset or the weights are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
GRID = SHARED / "datasets" / "mvtec_ad" / "grid" / "train" / "good"
LITE0 = SHARED / "weights" / "tf_efficientnet_lite0"
SEED = 0
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _peak_rss_gb() -> float:
    """This process's peak resident set size (GB).

    VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec, so a worker started by a parent that
    already holds the features would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _seed() -> None:
    import numpy as np
    import torch

    torch.manual_seed(SEED)
    np.random.seed(SEED)  # anomalib's random projection also draws from numpy's global RNG


# ---- feature extraction ----------------------------------------------------------------------------------


def extract(images: int | None, batch_size: int = 16):
    import torch
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    files = sorted(p for p in GRID.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if images:
        files = files[:images]
    model = PatchcoreModel(backbone=f"local-dir:{LITE0}", layers=["blocks.2", "blocks.4"], pre_trained=True)
    model.train()  # train mode: forward() appends each batch's patch embeddings to embedding_store
    for lo in range(0, len(files), batch_size):
        batch = []
        for path in files[lo : lo + batch_size]:
            with Image.open(path) as im:
                x = F.to_dtype(F.to_image(im.convert("RGB")), torch.float32, scale=True)
            x = F.resize(x, [256, 256], antialias=True)
            batch.append(F.normalize(x, mean=[0.5] * 3, std=[0.5] * 3))
        model(torch.stack(batch))
    embedding = torch.vstack(model.embedding_store)  # what PatchcoreModel.subsample_embedding stacks
    model.embedding_store.clear()
    return embedding, len(files)


# ---- workers (one process each) --------------------------------------------------------------------------


def worker_stock(emb_path: str, ratio: float, iters: int, threads: int) -> dict:
    """anomalib's KCenterGreedy for ``iters`` iterations: its methods, its loop body (minus tqdm)."""
    import torch
    from anomalib.models.components import KCenterGreedy

    if threads:
        torch.set_num_threads(threads)
    embedding = torch.load(emb_path)
    _seed()
    t0 = time.perf_counter()
    sampler = KCenterGreedy(embedding=embedding, sampling_ratio=ratio)
    sampler.model.fit(sampler.embedding)
    sampler.features = sampler.model.transform(sampler.embedding)
    sampler.reset_distances()
    idx = torch.randint(high=sampler.n_observations, size=(1,), device=sampler.features.device).squeeze()
    selected = [idx]
    t_setup = time.perf_counter() - t0
    n = min(iters, sampler.coreset_size - 1)
    t1 = time.perf_counter()
    for _ in range(n):
        sampler.update_distances(cluster_center=idx)
        idx = sampler.get_new_idx()
        sampler.min_distances.scatter_(0, idx.unsqueeze(0).unsqueeze(1), 0.0)
        selected.append(idx)
    t_loop = time.perf_counter() - t1
    return {
        "setup_s": t_setup,
        "loop_s": t_loop,
        "iters": n,
        "coreset_size": sampler.coreset_size,
        "idxs": torch.stack(selected).tolist(),
        "peak_rss_gb": _peak_rss_gb(),
        "n": sampler.n_observations,
        "dim": int(sampler.features.shape[1]),
        "threads": torch.get_num_threads(),
    }


def worker_fast(emb_path: str, ratio: float) -> dict:
    import torch
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection  # noqa: F401

    from core.models.coreset import FastKCenterGreedy

    embedding = torch.load(emb_path)  # (anomalib imported above, as in the stock worker: not timed)
    _seed()
    ticks: list[int] = []
    t0 = time.perf_counter()
    sampler = FastKCenterGreedy(embedding, ratio, progress=lambda done, total: ticks.append(done))
    idxs = sampler.select_coreset_idxs()
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "coreset_size": len(idxs),
        "idxs": idxs,
        "peak_rss_gb": _peak_rss_gb(),
        "progress_calls": len(ticks),
        "stats": sampler.stats,
    }


def _run_worker(args: list[str]) -> dict:
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")  # keep glibc from hoarding freed 300 MB temporaries
    env["TQDM_DISABLE"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"worker {args[:2]} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- main ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--ratios", default="0.01,0.1,0.25", help="comma-separated coreset sampling ratios")
    parser.add_argument(
        "--stock-iters", type=int, default=200, help="iterations of anomalib's sampler actually run (then extrapolated)"
    )
    parser.add_argument(
        "--stock-threads",
        choices=["both", "default", "1"],
        default="both",
        help="torch threads for anomalib's sampler: both (report the faster), default, or 1",
    )
    parser.add_argument(
        "--fit-ratio", type=float, default=0.1, help="ratio of the whole-fit row (extraction + coreset in this process)"
    )
    parser.add_argument("--worker", choices=["stock", "fast"], help=argparse.SUPPRESS)
    parser.add_argument("--emb", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ratio", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "stock":
        print(json.dumps(worker_stock(args.emb, args.ratio, args.stock_iters, args.threads)))
        return 0
    if args.worker == "fast":
        print(json.dumps(worker_fast(args.emb, args.ratio)))
        return 0

    if not GRID.is_dir():
        print(f"MVTec AD grid not found at {GRID}: nothing to benchmark (this needs ../shared).")
        return 0
    if not (LITE0 / "model.safetensors").is_file():
        print(f"EfficientNet-Lite0 weights not found at {LITE0}: nothing to benchmark (this needs ../shared).")
        return 0
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        print("note: MALLOC_MMAP_THRESHOLD_ is not set in this process (workers get 131072).", file=sys.stderr)

    import torch

    ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs", file=sys.stderr)
    t0 = time.perf_counter()
    embedding, n_images = extract(args.images)
    t_extract = time.perf_counter() - t0
    rss_extract = _peak_rss_gb()
    print(f"extracted {tuple(embedding.shape)} from {n_images} images in {t_extract:.1f} s", file=sys.stderr)

    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        emb_path = str(Path(tmp) / "embedding.pt")
        torch.save(embedding, emb_path)

        # anomalib's sampler with torch's default threads and with one thread (on a busy machine OpenMP
        # can make the default much slower); the faster of the two is the reference timing.
        stocks = []
        for threads in {"both": (0, 1), "default": (0,), "1": (1,)}[args.stock_threads]:
            print(
                f"anomalib KCenterGreedy: {args.stock_iters} iterations, threads={threads or 'default'} ...",
                file=sys.stderr,
            )
            stocks.append(
                _run_worker(
                    [
                        "--worker",
                        "stock",
                        "--emb",
                        emb_path,
                        "--ratio",
                        str(ratios[0]),
                        "--stock-iters",
                        str(args.stock_iters),
                        "--threads",
                        str(threads),
                    ]
                )
            )
        if len(stocks) == 2:
            assert stocks[0]["idxs"] == stocks[1]["idxs"], "anomalib's picks depend on the thread count?"
        stock = min(stocks, key=lambda r: r["loop_s"])
        per_iter = stock["loop_s"] / max(1, stock["iters"])
        prefix = stock["idxs"]
        fast_results = {}
        for r in ratios:
            print(f"FastKCenterGreedy at {r:g} ...", file=sys.stderr)
            fast_results[r] = _run_worker(["--worker", "fast", "--emb", emb_path, "--ratio", str(r)])

    n, dim = stock["n"], stock["dim"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (
        f"MVTec AD grid, {n_images} train images -> {n} patch vectors ({dim} dims after the random "
        f"projection); torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
        f"{load} at the end; seed {SEED}."
    )
    rows.append(
        "| sampler | ratio | coreset size | seconds | iterations/s | peak RSS (GB) | indices identical to anomalib |"
    )
    rows.append("|---|---|---|---|---|---|---|")
    rows.append(
        f"| feature extraction (PatchcoreModel, train mode) | - | - | {t_extract:.1f} | - | {rss_extract:.2f} | - |"
    )
    for r in ratios:
        size = int(n * r)
        est = stock["setup_s"] + per_iter * (size - 1)
        how = (
            "measured, full run" if stock["iters"] >= size - 1 else f"**extrapolated** from {stock['iters']} iterations"
        )
        rows.append(
            f"| anomalib KCenterGreedy ({how}, "
            f"{stock['threads']} thread{'s' if stock['threads'] > 1 else ''}) | {r:g} | "
            f"{size} | ~{est:,.0f} | {1 / per_iter:.2f} | {stock['peak_rss_gb']:.2f} | (reference) |"
        )
    for r in ratios:
        res = fast_results[r]
        size = res["coreset_size"]
        m = min(len(prefix), size)
        same = res["idxs"][:m] == prefix[:m]
        verdict = f"{'yes' if same else 'NO'} (first {m} of {size} compared)"
        rows.append(
            f"| FastKCenterGreedy | {r:g} | {size} | {res['seconds']:.1f} | "
            f"{(size - 1) / res['seconds']:,.0f} | {res['peak_rss_gb']:.2f} | {verdict} |"
        )
    # The whole fit in one process, as a PatchCore training run does it: extraction, then the coreset.
    fit_ratio = args.fit_ratio
    from core.models.coreset import select_coreset

    _seed()
    t1 = time.perf_counter()
    bank, _ = select_coreset(embedding, fit_ratio, method="anomalib")
    t_fit = t_extract + time.perf_counter() - t1
    stock_fit = t_extract + stock["setup_s"] + per_iter * (bank.shape[0] - 1)
    how = "" if stock["iters"] >= bank.shape[0] - 1 else ", extrapolated"
    rows.append(
        f"| whole PatchCore fit in one process: extraction + FastKCenterGreedy (stock: ~{stock_fit:,.0f} s{how})"
        f" | {fit_ratio:g} | {bank.shape[0]} | {t_fit:.1f} | - | {_peak_rss_gb():.2f} | - |"
    )
    print(header)
    print()
    print("\n".join(rows))
    print()
    per = ", ".join(f"{r['threads']} thread(s): {r['loop_s'] / max(1, r['iters']):.3f} s" for r in stocks)
    print(
        "Stock seconds are extrapolated (when fewer iterations than the coreset size ran): setup (projection) "
        f"+ measured seconds/iteration x (coreset size - 1); anomalib's seconds per iteration with {per}. "
        "Peak RSS is per process (each sampler ran in its own; ~1.1 GB of it is torch + anomalib)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
