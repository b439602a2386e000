"""How PatchCore's fit time and memory grow with the training set: 100 to 2,000 images of 256x256.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python benchmarks/scaling.py [--sizes 100 250 500 1000 2000]
        [--ratios 0.01 0.1] [--uncapped 1000] [--stock-budget 600]

Real data, at a user's scale: MVTec AD grid's 1024x1024 images cut into 256x256 tiles (264 train images -> up
to 4,224 normal tiles; the test set's tiles with defects, with their masks, and the tiles of its good images).
Each size is imported the way a user imports a folder (``core.data.importing``: a folder of PNGs outside the
artifacts folder) and trained by the product in a child process (``python -m core execute``), so every figure
is the product's own: fit and coreset seconds, peak RSS of the training process, image and pixel AUROC on the
same 561 test tiles, and the estimate the launch form showed before the run. Stock anomalib's coreset
(``KCenterGreedy``: one full pass over all patches per pick) is timed for a few picks on features of the same
shape and extrapolated; a whole stock ``Engine.fit`` is run where it fits ``--stock-budget`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

GRID = ROOT.parent / "shared" / "datasets" / "mvtec_ad" / "grid"
TILE = 256


def tiles(image: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    return [
        (y, x, image[y : y + TILE, x : x + TILE])
        for y in range(0, image.shape[0], TILE)
        for x in range(0, image.shape[1], TILE)
    ]


def make_user_folders(out: Path) -> dict[str, int]:
    """normal/ (all train tiles), normal_test/, abnormal/<type>/ and masks/<type>/ from real grid."""
    counts = {"normal": 0, "normal_test": 0, "abnormal": 0}
    for f in sorted((GRID / "train" / "good").glob("*.png")):
        for y, x, t in tiles(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)):
            (out / "normal").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / "normal" / f"{f.stem}_{y}_{x}.png"), t)
            counts["normal"] += 1
    for d in sorted((GRID / "test").iterdir()):
        for f in sorted(d.glob("*.png")):
            image = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            mask = (
                cv2.imread(str(GRID / "ground_truth" / d.name / f"{f.stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
                if d.name != "good"
                else np.zeros_like(image)
            )
            for (y, x, t), (_, _, m) in zip(tiles(image), tiles(mask), strict=False):
                name = f"{f.stem}_{y}_{x}.png"
                if d.name == "good":
                    (out / "normal_test").mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(out / "normal_test" / name), t)
                    counts["normal_test"] += 1
                elif m.any():  # a defective image's tiles without defect pixels are left out (their label is unclear)
                    for sub, arr in (("abnormal", t), ("masks", m)):
                        (out / sub / d.name).mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(out / sub / d.name / name), arr)
                    counts["abnormal"] += 1
    return counts


def subset(folder: Path, n: int, out: Path) -> Path:
    """An evenly spaced subset of ``n`` files, as symlinks (the importer links or reads them like any folder)."""
    files = sorted(folder.glob("*.png"))
    keep = np.linspace(0, len(files) - 1, n).round().astype(int)
    out.mkdir(parents=True, exist_ok=True)
    for i in keep:
        (out / files[i].name).symlink_to(files[i])
    return out


def stock_coreset_seconds(patches: int, dims: int, picks: int, probe: int = 20) -> float:
    """anomalib's KCenterGreedy time for ``picks`` picks on ``patches`` x ``dims`` features, extrapolated from
    ``probe`` picks: its random projection once, then one full pass over all patches per pick (so the values of
    the features do not matter)."""
    import torch
    from anomalib.models.components import KCenterGreedy

    x = torch.randn(patches, dims)
    times = []
    for n in (2, 2 + probe):
        sampler = KCenterGreedy(x, n / patches + 1e-9)
        t0 = time.perf_counter()
        sampler.select_coreset_idxs()
        times.append(time.perf_counter() - t0)
    per_pick = (times[1] - times[0]) / probe
    return times[0] + per_pick * (picks - 2)


def run_product(spec, params: dict, env: dict) -> dict:
    from core.engine import estimate
    from core.jobs import queue as jobs
    from core.store.runs import RunRegistry

    est = estimate.estimate_run("patchcore", params, spec)
    run = jobs.submit("patchcore", spec, params, start=False)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "core", "execute", run.id],
        cwd=ROOT,
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    done = RunRegistry().get(run.id)
    if done.status != "done":
        raise SystemExit(f"run {run.id} {done.status}: {done.error}")
    coreset = done.extra.get("coreset", {})
    return {
        "run": run.id,
        "fit_s": done.timings["fit_s"],
        "coreset_s": done.timings.get("coreset_s"),
        "rss_mb": done.timings["peak_rss_fit_mb"],
        "bank": coreset.get("bank_size"),
        "patches": coreset.get("patches"),
        "image_auroc": done.metrics["image_auroc"],
        "pixel_auroc": done.metrics["pixel_auroc"],
        "est_fit_s": est.fit_seconds if est else None,
        "est_mb": est.peak_mb if est else None,
        "wall_s": wall,
    }


def stock_fit(spec, ratio: float) -> dict:
    """A whole stock anomalib PatchCore fit (its own KCenterGreedy) on the same data, in this process."""
    import resource

    from anomalib.engine import Engine
    from anomalib.models import Patchcore

    from core.data import datasets
    from core.models import weights

    model = Patchcore(
        backbone=weights.resolve_backbone("tf_efficientnet_lite0"),
        layers=["blocks.2", "blocks.4"],
        coreset_sampling_ratio=ratio,
        evaluator=False,
        visualizer=False,
    )
    engine = Engine(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=tempfile.mkdtemp(),
    )
    t0 = time.perf_counter()
    engine.fit(model=model, datamodule=datasets.build_datamodule(spec))
    return {"fit_s": time.perf_counter() - t0, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500, 1000, 2000])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument(
        "--uncapped",
        type=int,
        nargs="*",
        default=[1000],
        help="sizes also trained at 10 %% without the bank cap (max_bank_size=0)",
    )
    parser.add_argument(
        "--stock-budget",
        type=float,
        default=600.0,
        help="run a whole stock anomalib fit where its coreset is expected to take less (seconds)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every row to this file")
    args = parser.parse_args()
    if not (GRID / "train" / "good").is_dir():
        print(f"needs real MVTec AD grid at {GRID}")
        return 2

    work = Path(tempfile.mkdtemp(prefix="aw-scaling-"))
    os.environ.update({"AW_ARTIFACTS": str(work / "artifacts"), "AW_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    from core.data import datasets, importing
    from core.engine import estimate
    from core.jobs.queue import child_env
    from core.models import MAX_BANK_SIZE

    user = work / "user_files"
    counts = make_user_folders(user)
    print(
        f"tiles: {counts} (from {GRID}); work folder {work}; machine matrix-product speed "
        f"{estimate.gemm_gflops():.0f} GFLOP/s",
        flush=True,
    )
    env = child_env()
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        importing.import_folder(
            f"grid{n}",
            subset(user / "normal", n, work / f"normal{n}"),
            user / "abnormal",
            user / "masks",
            normal_test_dir=user / "normal_test",
        )
        import_s = time.perf_counter() - t0
        spec = datasets.custom(f"grid{n}")
        plans = [(r, MAX_BANK_SIZE) for r in args.ratios] + [(0.1, 0) for _ in ([n] if n in args.uncapped else [])]
        for ratio, cap in plans:
            params = {"backbone": "tf_efficientnet_lite0", "coreset_sampling_ratio": ratio, "max_bank_size": cap}
            row = {
                "images": n,
                "ratio": ratio,
                "cap": cap or "none",
                "import_s": import_s,
                "method": "workbench",
                **run_product(spec, params, env),
            }
            patches, picks = row["patches"], int(row["patches"] * ratio)
            row["stock_coreset_s"] = stock_coreset_seconds(patches, 152, picks)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if cap == MAX_BANK_SIZE and row["stock_coreset_s"] < args.stock_budget:
                stock = stock_fit(spec, ratio)
                rows.append(
                    {
                        "images": n,
                        "ratio": ratio,
                        "cap": "none",
                        "method": "stock anomalib",
                        "patches": patches,
                        "bank": picks,
                        **stock,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    cols = [
        "images",
        "patches",
        "ratio",
        "cap",
        "bank",
        "method",
        "est_fit_s",
        "fit_s",
        "coreset_s",
        "stock_coreset_s",
        "est_mb",
        "rss_mb",
        "image_auroc",
        "pixel_auroc",
        "import_s",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(
                "–"
                if v is None
                else f"{v:,.3f}"
                if isinstance(v, float) and v < 10
                else f"{v:,.0f}"
                if isinstance(v, float)
                else f"{v:,}"
                if isinstance(v, int)
                else str(v)
            )
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
