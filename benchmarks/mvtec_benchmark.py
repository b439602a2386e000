"""Train and evaluate on every MVTec AD category found, and print one markdown table.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python benchmarks/mvtec_benchmark.py [--coreset 0.1 0.01]
        [--categories grid tile] [--backbone tf_efficientnet_lite0] [--efficientad-steps 1000]

Each row is a real run in the run registry (artifacts/), so the dashboard shows it too. PatchCore runs on
every category present under AW_MVTEC_ROOT; EfficientAD only where its real pretrained teacher is available
(an untrained-teacher run is never presented as a result). Published numbers follow, labelled as such.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.memory import limit_heap_growth  # noqa: E402

limit_heap_growth()

from core import datasets, jobs, weights  # noqa: E402
from core.cli import fmt  # noqa: E402
from core.config import settings  # noqa: E402
from core.evaluation import average_metrics  # noqa: E402
from core.runs import RunRegistry  # noqa: E402

PUBLISHED = [
    # (source, model, category, image AUROC, pixel AUROC) — not measured here
    ("PatchCore paper (Roth et al., CVPR 2022), WRN-50, 10 % coreset", "PatchCore", "grid", 0.979, 0.987),
    ("anomalib README, PatchCore WRN-50", "PatchCore", "grid", 0.959, None),
]
COLUMNS = ["model", "category", "coreset", "image AUROC", "pixel AUROC", "image F1", "pixel F1", "AUPRO",
           "FPR@100% recall", "fit s", "test s", "e2e ms p50", "e2e ms p95", "img/s b1", "img/s best",
           "peak RSS MB", "run"]


def row(run) -> dict:
    m, t, lat = run.metrics, run.timings, run.latency
    return {
        "model": run.model, "category": run.category,
        "coreset": run.params.get("coreset_sampling_ratio", "–"),
        "image AUROC": m.get("image_auroc"), "pixel AUROC": m.get("pixel_auroc"), "image F1": m.get("image_f1"),
        "pixel F1": m.get("pixel_f1"), "AUPRO": m.get("aupro"), "FPR@100% recall": m.get("fpr_at_full_recall"),
        "fit s": t.get("fit_s"), "test s": t.get("test_s"), "e2e ms p50": lat.get("e2e_ms_p50"),
        "e2e ms p95": lat.get("e2e_ms_p95"), "img/s b1": lat.get("images_per_s_b1"),
        "img/s best": lat.get("images_per_s_best"), "peak RSS MB": t.get("peak_rss_fit_mb"), "run": run.id,
    }


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", nargs="*", default=None)
    parser.add_argument("--coreset", nargs="*", type=float, default=[0.1])
    parser.add_argument("--backbone", default=None, help="default: the best backbone available here")
    parser.add_argument("--efficientad-steps", type=int, default=1000)
    parser.add_argument("--max-train-images", type=int, default=None)
    args = parser.parse_args()

    cfg = settings()
    categories = args.categories or datasets.available_mvtec_categories(cfg)
    if not categories:
        print(f"No MVTec AD category found under {cfg.mvtec_root} (set AW_MVTEC_ROOT).")
        return 0
    backbone = args.backbone or weights.default_backbone(cfg)
    print(f"MVTec root: {cfg.mvtec_root}; categories: {', '.join(categories)}; backbone: {backbone}", flush=True)

    plans = [("patchcore", {"backbone": backbone, "coreset_sampling_ratio": r}) for r in args.coreset]
    if weights.efficientad_teacher_available("small") and cfg.imagenet_dir:
        plans.append(("efficientad", {"model_size": "small", "max_steps": args.efficientad_steps}))
    else:
        print("EfficientAD skipped: its pretrained teacher (or AW_IMAGENET_DIR) is not available here; an "
              "untrained-teacher run would not be a real EfficientAD result.", flush=True)

    registry = RunRegistry(cfg)
    done = []
    for category in categories:
        spec = datasets.mvtec(category, cfg=cfg, max_train_images=args.max_train_images)
        for model, params in plans:
            run = jobs.submit(model, spec, params, seed=0, cfg=cfg, start=False)
            print(f"run {run.id}: {model} {params} on {category} …", flush=True)
            status = jobs.execute_claimed(run.id, cfg)
            run = registry.get(run.id)
            if status != "done":
                print(f"  {status}: {run.error}", flush=True)
                continue
            done.append(run)

    rows = [row(r) for r in done]
    for model in sorted({r.model for r in done}):
        mine = [r for r in done if r.model == model]
        if len({r.category for r in mine}) > 1:
            avg = average_metrics([r.metrics for r in mine])
            rows.append({"model": model, "category": f"mean of {avg['n_categories']}",
                         "image AUROC": avg.get("image_auroc"), "pixel AUROC": avg.get("pixel_auroc"),
                         "image F1": avg.get("image_f1"), "pixel F1": avg.get("pixel_f1"), "AUPRO": avg.get("aupro"),
                         "FPR@100% recall": avg.get("fpr_at_full_recall")})
    print()
    print(f"Measured here ({done[0].latency.get('cpu') if done else '?'}, "
          f"{done[0].latency.get('threads') if done else '?'} threads, backbone {backbone}):\n")
    print(markdown(rows, COLUMNS))
    print("\nPublished (not measured here):\n")
    print(markdown([{"source": s, "model": m, "category": c, "image AUROC": i, "pixel AUROC": p}
                    for s, m, c, i, p in PUBLISHED], ["source", "model", "category", "image AUROC", "pixel AUROC"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
