"""Where PatchCore's quality stops rising with the memory-bank size: the product's default cap comes from this.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python benchmarks/bank_size.py [--images 1000]
        [--sizes 1000 2500 5000 10000 20000 40000] [--random]

Real data at a user's scale: ``--images`` 256x256 tiles of MVTec AD grid's train images (1,024 patches each,
EfficientNet-Lite0 blocks.2+blocks.4 as the product trains it), one k-center-greedy selection of
``max(--sizes)`` picks (the product's ``BlockedKCenterGreedy`` with anomalib's projection), then for each size m
a PatchCore bank of the first m picks: greedy is sequential, so that is exactly the bank a cap of m gives. Each
bank scores the same 561 test tiles (the 336 tiles of grid's good test images and the 225 tiles with defect
pixels, with their masks) through anomalib's own PatchCore forward: image AUROC per tile and pixel AUROC over a
fixed sample of 2 M pixels. ``--random`` adds banks of m random patches, for reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

GRID = ROOT.parent / "shared" / "datasets" / "mvtec_ad" / "grid"
TILE = 256


def _tiles(image: np.ndarray):
    return [
        image[y : y + TILE, x : x + TILE]
        for y in range(0, image.shape[0], TILE)
        for x in range(0, image.shape[1], TILE)
    ]


def _batch(tiles: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack([np.repeat(t[..., None], 3, 2) for t in tiles])).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.5  # EfficientNet-Lite0's normalisation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 5000, 10000, 20000, 40000])
    parser.add_argument("--random", action="store_true", help="also random banks of the same sizes")
    args = parser.parse_args()
    if not (GRID / "train" / "good").is_dir():
        print(f"needs real MVTec AD grid at {GRID}")
        return 2
    from sklearn.metrics import roc_auc_score

    from core import models
    from core.models.coreset import BlockedKCenterGreedy

    train = [
        t
        for f in sorted((GRID / "train" / "good").glob("*.png"))
        for t in _tiles(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
    ][: args.images]
    tiles, masks = [], []
    for d in sorted((GRID / "test").iterdir()):
        for f in sorted(d.glob("*.png")):
            image = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            mask = (
                cv2.imread(str(GRID / "ground_truth" / d.name / f"{f.stem}_mask.png"), cv2.IMREAD_GRAYSCALE)
                if d.name != "good"
                else np.zeros_like(image)
            )
            for t, m in zip(_tiles(image), _tiles(mask > 0), strict=False):
                if d.name == "good" or m.any():
                    tiles.append(t)
                    masks.append(m)
    labels = np.array([m.any() for m in masks], dtype=int)
    module = models.create_model("patchcore", {"backbone": "tf_efficientnet_lite0"})
    pm = module.model
    pm.train()
    t0 = time.perf_counter()
    with torch.no_grad():
        embedding = torch.vstack([pm(_batch(train[i : i + 16])) for i in range(0, len(train), 16)])
    pm.embedding_store.clear()
    extract_s = time.perf_counter() - t0
    torch.manual_seed(0)
    np.random.seed(0)
    sampler = BlockedKCenterGreedy(embedding, max(args.sizes) / embedding.shape[0] + 1e-9)
    t0 = time.perf_counter()
    order = torch.tensor(sampler.select_coreset_idxs())
    select_s = time.perf_counter() - t0
    print(
        f"{len(train)} train tiles -> {embedding.shape[0]:,} patches x {embedding.shape[1]} (extraction "
        f"{extract_s:.0f} s); {len(order):,} greedy picks in {select_s:.0f} s ({sampler.stats['dims']} dims); "
        f"test: {len(tiles)} tiles, {labels.sum()} with defects",
        flush=True,
    )

    pm.eval()
    x_test = _batch(tiles)
    gt = np.stack(masks).reshape(-1)
    pixels = np.random.default_rng(0).choice(gt.size, 2_000_000, replace=False)
    banks = [("greedy (first m picks)", order)]
    if args.random:
        banks.append(("random", torch.randperm(embedding.shape[0], generator=torch.Generator().manual_seed(1))))
    print("| bank | size | share of patches | image AUROC | pixel AUROC | scoring s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, idx in banks:
        for size in args.sizes:
            pm.memory_bank = embedding[idx[:size]].contiguous()
            t0 = time.perf_counter()
            scores, amaps = [], []
            with torch.no_grad():
                for i in range(0, len(x_test), 16):
                    out = pm(x_test[i : i + 16])
                    scores.append(out.pred_score.reshape(-1))
                    amaps.append(out.anomaly_map[:, 0])
            scores, amaps = torch.cat(scores).numpy(), torch.cat(amaps).numpy().reshape(-1)
            print(
                f"| {name} | {size:,} | {size / embedding.shape[0]:.1%} | {roc_auc_score(labels, scores):.4f} | "
                f"{roc_auc_score(gt[pixels], amaps[pixels]):.4f} | {time.perf_counter() - t0:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
