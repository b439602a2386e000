"""Train and evaluate models on every MVTec AD category found, and print one markdown table.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python benchmarks/mvtec_benchmark.py [--models patchcore padim ...|all]
        [--categories grid tile] [--backbone tf_efficientnet_lite0] [--coreset 0.1 0.01]
        [--param stfpm.max_epochs=20] [--efficientad-steps 1000]

Each row is a real run in the run registry (artifacts/), trained in its own process as the queue worker runs it (so
its peak RSS is its own), and the dashboard shows it too. Every model named (``all``
= every model in the registry) trains with its registry defaults on every category present under
AW_MVTEC_ROOT; the backbone is the registry's choice for this machine (anomalib's default online, the bundled
EfficientNet-Lite0 offline) unless ``--backbone`` says otherwise. EfficientAD runs only where its real
pretrained teacher is available (an untrained-teacher run is never presented as a result). Published numbers
for the same models follow (``core.views.comparison.REFERENCES``), labelled as such, and the measured per-image costs
that the registry's time estimates use.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.runtime import limit_heap_growth  # noqa: E402

limit_heap_growth()

from core import models  # noqa: E402
from core.cli.format import fmt, parse_params  # noqa: E402
from core.config import settings  # noqa: E402
from core.data import datasets  # noqa: E402
from core.engine.evaluation import average_metrics  # noqa: E402
from core.jobs import queue as jobs  # noqa: E402
from core.models import weights  # noqa: E402
from core.store.runs import RunRegistry  # noqa: E402
from core.views import comparison  # noqa: E402

COLUMNS = [
    "model",
    "backbone",
    "category",
    "setting",
    "image AUROC",
    "pixel AUROC",
    "image F1",
    "pixel F1",
    "AUPRO",
    "FPR@100% recall",
    "fit s",
    "test s",
    "e2e ms p50",
    "e2e ms p95",
    "img/s b1",
    "peak RSS MB",
    "run",
]
COST_COLUMNS = ["model", "backbone", "category", "train images", "epochs", "train s / image / epoch", "score s / image"]


def setting(run) -> str:
    p = run.params
    if "coreset_sampling_ratio" in p:
        return f"coreset {p['coreset_sampling_ratio']}"
    if "max_epochs" in p:
        return f"{p['max_epochs']} epochs"
    if "max_steps" in p:
        return f"{p['max_steps']} steps"
    return "one pass"


def row(run) -> dict:
    m, t, lat = run.metrics, run.timings, run.latency
    return {
        "model": models.get_entry(run.model).label,
        "backbone": run.params.get("backbone", "–"),
        "category": run.category,
        "setting": setting(run),
        "image AUROC": m.get("image_auroc"),
        "pixel AUROC": m.get("pixel_auroc"),
        "image F1": m.get("image_f1"),
        "pixel F1": m.get("pixel_f1"),
        "AUPRO": m.get("aupro"),
        "FPR@100% recall": m.get("fpr_at_full_recall"),
        "fit s": t.get("fit_s"),
        "test s": t.get("test_s"),
        "e2e ms p50": lat.get("e2e_ms_p50"),
        "e2e ms p95": lat.get("e2e_ms_p95"),
        "img/s b1": lat.get("images_per_s_b1"),
        "peak RSS MB": t.get("peak_rss_fit_mb"),
        "run": run.id,
    }


def cost_row(run) -> dict:
    """Seconds per 256² image as the registry's ``Cost`` counts them (fit includes decoding and set-up)."""
    m, t = run.metrics, run.timings
    n_train = int(m.get("n_train") or 0) or len(datasets.train_images(datasets.DatasetSpec.from_dict(run.dataset)))
    n_test = int(m.get("n_normal") or 0) + int(m.get("n_anomalous") or 0)
    epochs = int(run.params.get("max_epochs", 1))
    scale = (256 / run.params.get("image_size", 256)) ** 2
    return {
        "model": models.get_entry(run.model).label,
        "backbone": run.params.get("backbone", "–"),
        "category": run.category,
        "train images": n_train,
        "epochs": epochs,
        "train s / image / epoch": t["fit_s"] / max(1, n_train * epochs) * scale,
        "score s / image": t["test_s"] / max(1, n_test) * scale,
    }


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def plans(args, cfg) -> list[tuple[str, dict]]:
    names = list(models.REGISTRY) if args.models == ["all"] else args.models
    overrides: dict[str, dict] = {}
    for item in parse_params(args.param).items():
        (model, _, key), value = item[0].partition("."), item[1]
        overrides.setdefault(model, {})[key] = value
    out = []
    for name in names:
        entry = models.get_entry(name)
        params = dict(overrides.get(entry.name, {}))
        if args.backbone and entry.backbone_stages:
            params["backbone"] = args.backbone
        if entry.name == "patchcore":
            out += [(entry.name, {**params, "coreset_sampling_ratio": r}) for r in args.coreset]
        elif entry.name == "efficientad":
            if weights.efficientad_teacher_available("small") and cfg.imagenet_dir:
                out.append((entry.name, {"model_size": "small", "max_steps": args.efficientad_steps, **params}))
            else:
                print(
                    "EfficientAD skipped: its pretrained teacher (or AW_IMAGENET_DIR) is not available here; an "
                    "untrained-teacher run would not be a real EfficientAD result.",
                    flush=True,
                )
        else:
            out.append((entry.name, params))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["patchcore", "efficientad"],
        help=f"registry names ({', '.join(models.REGISTRY)}) or 'all'",
    )
    parser.add_argument("--categories", nargs="*", default=None)
    parser.add_argument("--coreset", nargs="*", type=float, default=[0.1], help="PatchCore coreset ratios")
    parser.add_argument("--backbone", default=None, help="default: each model's registry default on this machine")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="override a model parameter, e.g. stfpm.max_epochs=20 (repeatable)",
    )
    parser.add_argument("--efficientad-steps", type=int, default=1000)
    parser.add_argument("--max-train-images", type=int, default=None)
    args = parser.parse_args()

    cfg = settings()
    categories = args.categories or datasets.available_mvtec_categories(cfg)
    if not categories:
        print(f"No MVTec AD category found under {cfg.mvtec_root} (set AW_MVTEC_ROOT).")
        return 0
    todo = plans(args, cfg)
    print(
        f"MVTec root: {cfg.mvtec_root}; categories: {', '.join(categories)}; "
        f"runs: {', '.join(f'{m} {p}' for m, p in todo)}",
        flush=True,
    )

    registry = RunRegistry(cfg)
    done = []
    for category in categories:
        spec = datasets.mvtec(category, cfg=cfg, max_train_images=args.max_train_images)
        for model, params in todo:
            run = jobs.submit(model, spec, params, seed=0, cfg=cfg, start=False)
            print(f"run {run.id}: {model} {run.params} on {category} …", flush=True)
            # Its own process, as the product's worker runs it: peak RSS is the run's alone, not the benchmark's
            # running maximum over every model before it.
            subprocess.run(
                [sys.executable, "-m", "core", "execute", run.id],
                cwd=ROOT,
                env=jobs.child_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            run = registry.get(run.id)
            status = run.status
            if status != "done":
                print(f"  {status}: {run.error}", flush=True)
                continue
            print("  " + " · ".join(f"{k} {fmt(v)}" for k, v in row(run).items()), flush=True)
            done.append(run)

    rows = [row(r) for r in done]
    for model in sorted({r.model for r in done}):
        mine = [r for r in done if r.model == model]
        if len({r.category for r in mine}) > 1:
            avg = average_metrics([r.metrics for r in mine])
            rows.append(
                {
                    "model": models.get_entry(model).label,
                    "category": f"mean of {avg['n_categories']}",
                    "image AUROC": avg.get("image_auroc"),
                    "pixel AUROC": avg.get("pixel_auroc"),
                    "image F1": avg.get("image_f1"),
                    "pixel F1": avg.get("pixel_f1"),
                    "AUPRO": avg.get("aupro"),
                    "FPR@100% recall": avg.get("fpr_at_full_recall"),
                }
            )
    env = done[0].environment if done else {}
    print(f"\nMeasured here ({env.get('cpu', '?')}, {env.get('torch_threads', '?')} threads):\n")
    print(markdown(rows, COLUMNS))
    refs = comparison.reference_table(set(categories), comparison.model_labels(done) if done else None)
    print("\nPublished (not measured here):\n")
    print(
        markdown(
            [
                {
                    **r,
                    "image AUROC": r["image_auroc"],
                    "pixel AUROC": r["pixel_auroc"],
                    "image F1": r["image_f1"],
                    "pixel F1": r["pixel_f1"],
                    "AUPRO": r["aupro"],
                }
                for r in refs.to_dict("records")
            ],
            ["model", "config", "category", "image AUROC", "pixel AUROC", "image F1", "pixel F1", "AUPRO", "reference"],
        )
    )
    print("\nCosts per 256² image (the registry's models.Cost figures come from these):\n")
    print(markdown([cost_row(r) for r in done], COST_COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
