"""Does the training-set audit find defective images hidden among the 'good' ones, and what does it cost?

    .venv/bin/python benchmarks/audit.py --dataset mvtec:grid      # 264 train + 10 planted defective test images
    .venv/bin/python benchmarks/audit.py --dataset demo --planted 6

A scratch copy of the dataset is made (links, in a temporary artifacts folder; the real files are untouched) whose
train/good holds every training image plus ``--planted`` defective test images, spread evenly over the defect types.
``core.engine.audit.audit_dataset`` ranks them; the benchmark prints the top ``--top`` with the planted ones marked,
how many planted images are in it, and the audit's time beside one fit of the product's PatchCore on the original
training set (registry defaults on EfficientNet-Lite0: 10 % coreset, 256 px), trained as a normal run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _scratch_copy(spec, n_planted: int, folder: Path):
    """An MVTec-layout folder of links: all training images plus ``n_planted`` defective test images."""
    from core.data import datasets

    target = folder / spec.category
    (target / "train" / "good").mkdir(parents=True)
    for p in datasets.train_images(spec):
        (target / "train" / "good" / p.name).symlink_to(p.resolve())
    (target / "test").symlink_to((spec.path / "test").resolve())
    if (spec.path / "ground_truth").is_dir():
        (target / "ground_truth").symlink_to((spec.path / "ground_truth").resolve())
    defective = [s for s in datasets.test_samples(spec) if s.label == 1]
    by_type: dict[str, list] = {}
    for s in defective:
        by_type.setdefault(s.defect_type, []).append(s)
    planted = []
    i = 0
    while len(planted) < n_planted and any(by_type.values()):  # round-robin over the defect types
        kind = sorted(by_type)[i % len(by_type)]
        if by_type[kind]:
            s = by_type[kind].pop(0)
            name = f"planted_{kind}_{Path(s.path).stem}.png"
            (target / "train" / "good" / name).symlink_to(Path(s.path).resolve())
            planted.append(name)
        i += 1
    return datasets.DatasetSpec("folder", spec.category, str(folder)), planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mvtec:grid", help="demo | mvtec:<category> (default: mvtec:grid)")
    parser.add_argument("--planted", type=int, default=10, help="defective test images put into train/good")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=256, help="the audit's image size (default 256)")
    parser.add_argument("--coreset", type=float, default=0.02, help="the audit's coreset ratio (default 0.02)")
    parser.add_argument("--no-fit", action="store_true", help="skip timing one product fit")
    args = parser.parse_args()

    os.environ["AW_ARTIFACTS"] = tempfile.mkdtemp(prefix="aw-audit-bench-")
    from core.cli.format import parse_dataset, table
    from core.engine.audit import audit_dataset
    from core.jobs import queue as jobs
    from core.store.runs import RunRegistry

    spec = parse_dataset(args.dataset)
    scratch, planted = _scratch_copy(spec, args.planted, Path(os.environ["AW_ARTIFACTS"]) / "bench_data")
    n_train = len(list((scratch.path / "train" / "good").iterdir()))
    print(f"{spec.label}: {n_train - len(planted)} training images + {len(planted)} planted defective test images")

    start = time.perf_counter()
    result = audit_dataset(
        scratch, k=args.folds, params={"image_size": args.image_size, "coreset_sampling_ratio": args.coreset}
    )
    audit_s = time.perf_counter() - start
    rows = [
        {"rank": e.rank, "image": e.name, "planted": "yes" if e.name in planted else "", "score": e.score}
        for e in result.top(args.top)
    ]
    print(table(rows))
    hits = sum(e.name in planted for e in result.top(args.top))
    ranks = sorted(e.rank for e in result.entries if e.name in planted)

    fit_s = None
    if not args.no_fit:
        run = jobs.submit("patchcore", spec, {"backbone": "tf_efficientnet_lite0"}, seed=0, start=False)
        jobs.execute_claimed(run.id)
        fit_s = RunRegistry().get(run.id).timings.get("fit_s")
    summary = {
        "dataset": spec.label,
        "train + planted": f"{n_train - len(planted)} + {len(planted)}",
        "folds": args.folds,
        "audit image size": args.image_size,
        "audit coreset": args.coreset,
        f"planted in top {args.top}": f"{hits} / {len(planted)}",
        "planted ranks": " ".join(map(str, ranks)),
        "audit s": round(audit_s, 1),
        "audit parts s": " ".join(f"{k} {v}" for k, v in result.parts.items()),
        "one fit s (PatchCore 10 %, 256 px)": None if fit_s is None else round(fit_s, 1),
        # Like the run's fit_s, without building the model (loading the backbone weights).
        "audit / fit": None if not fit_s else round((audit_s - result.parts.get("setup", 0.0)) / fit_s, 2),
    }
    print(table([summary]))


if __name__ == "__main__":
    main()
