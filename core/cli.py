"""``python -m core …``: the same functions the dashboard uses, from a terminal.

    python -m core train --model patchcore --dataset mvtec:grid --param coreset_sampling_ratio=0.1
    python -m core runs
    python -m core show RUN_ID
    python -m core predict RUN_ID image1.png image2.jpg --csv results.csv
    python -m core weights import ../shared/weights/tf_efficientnet_lite0

Errors a user can fix are printed as one clear line (exit code 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from core.config import settings
from core.errors import WorkbenchError


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain aligned text table (readable in any terminal, pasteable as markdown)."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def parse_dataset(text: str, max_train_images: int | None = None):
    """'demo' | 'mvtec:<category>' | 'folder:<imported name>'."""
    from core import datasets

    kind, _, name = text.partition(":")
    if kind == "demo":
        return datasets.demo()
    if kind == "mvtec":
        return datasets.mvtec(name, max_train_images=max_train_images)
    if kind in {"folder", "custom"}:
        return datasets.custom(name)
    raise WorkbenchError(f"Unknown dataset '{text}': use demo, mvtec:<category> or folder:<imported name>.")


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise WorkbenchError(f"Parameters are key=value, got '{pair}'.")
        params[key.strip()] = value.strip()
    return params


def run_row(run) -> dict:
    m, t, lat = run.metrics, run.timings, run.latency
    return {
        "id": run.id, "status": run.status, "model": run.model, "dataset": run.dataset.get("category"),
        "image AUROC": m.get("image_auroc"), "pixel AUROC": m.get("pixel_auroc"), "image F1": m.get("image_f1"),
        "AUPRO": m.get("aupro"), "fit s": t.get("fit_s"), "img/s": lat.get("images_per_s_b1"),
        "phase": run.phase if run.status == "running" else "",
    }


class Bar:
    """A tqdm bar per phase for foreground runs."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm, self.bar, self.phase = tqdm, None, None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            if self.bar is not None:
                self.bar.close()
            self.phase = phase
            self.bar = self.tqdm(total=total or None, desc=phase, unit="it", leave=True, file=sys.stderr)
        if self.bar is not None and total:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- commands -------------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from core import jobs
    from core.runs import RunRegistry

    spec = parse_dataset(args.dataset, args.max_train_images)
    run = jobs.submit(args.model, spec, parse_params(args.param), args.seed, start=args.background)
    if args.background:
        print(f"queued run {run.id}; follow it with `python -m core show {run.id}`")
        return 0
    print(f"run {run.id}: {run.model} on {spec.label}")
    bar = Bar()
    try:
        status = jobs.execute_claimed(run.id, echo=bar)
    finally:
        bar.close()
    print(show_run(RunRegistry().get(run.id)))
    return 0 if status == "done" else 1


def show_run(run) -> str:
    from core import models

    lines = [f"run {run.id}  [{run.status}]  {run.model} on {run.dataset.get('category')} (seed {run.seed})",
             f"params: {json.dumps(run.params)}"]
    lines += [f"WARNING: {w}" for w in models.model_warnings(run.model, run.params)]
    if run.error:
        lines.append(f"error: {run.error}")
    if run.status == "running":
        lines.append(f"phase: {run.phase} {run.progress:.0%}  {run.message}")
    m = run.metrics
    if m:
        keys = ["image_auroc", "pixel_auroc", "image_f1", "pixel_f1", "aupro", "fpr_at_full_recall",
                "image_threshold"]
        lines.append(table([{k: m.get(k) for k in keys}]))
        per = m.get("per_defect") or {}
        if per:
            lines.append(table([{"defect type": k, **v} for k, v in per.items()]))
    t, lat = run.timings, run.latency
    if lat:
        lines.append(table([{
            "fit s": t.get("fit_s"), "test s": t.get("test_s"), "e2e ms p50": lat.get("e2e_ms_p50"),
            "e2e ms p95": lat.get("e2e_ms_p95"), "model ms p50": lat.get("model_ms_p50"),
            "img/s b1": lat.get("images_per_s_b1"), "img/s best": lat.get("images_per_s_best"),
            "best batch": lat.get("best_batch_size"), "peak RSS MB": lat.get("peak_rss_mb"),
            "threads": lat.get("threads"),
        }]))
        lines.append(f"cpu: {lat.get('cpu')}")
    if run.retrieval:
        lines.append(f"retrieval: {json.dumps(run.retrieval)}")
    return "\n".join(lines)


def cmd_runs(args) -> int:
    from core.runs import RunRegistry

    registry = RunRegistry()
    registry.recover_interrupted()
    print(table([run_row(r) for r in registry.list(status=args.status, limit=args.limit)]))
    return 0


def cmd_show(args) -> int:
    from core.runs import RunRegistry

    print(show_run(RunRegistry().get(args.run_id)))
    return 0


def cmd_predict(args) -> int:
    from core.inference import LoadedModel, set_threads
    from core.runs import RunRegistry

    set_threads()
    registry = RunRegistry()
    run = registry.get(args.run_id)
    loaded = LoadedModel(registry.run_dir(run.id))
    t0 = time.perf_counter()
    preds = loaded.predict([Path(p) for p in args.images], names=list(args.images))
    elapsed = time.perf_counter() - t0
    rows = [{"image": p.name, "score": p.score,
             "verdict": p.error and "ERROR" or ("anomalous" if p.is_anomalous else "normal"),
             "message": p.error or ""} for p in preds]
    print(table(rows))
    ok = sum(p.error is None for p in preds)
    print(f"{ok} image(s) scored in {elapsed:.2f} s; threshold {fmt(loaded.image_threshold)} (raw score)")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0 if ok == len(preds) else 1


def cmd_benchmark(args) -> int:
    from core import latency
    from core.artifacts import RunArtifacts
    from core.inference import LoadedModel, set_threads
    from core.runs import RunRegistry

    set_threads(args.threads)
    registry = RunRegistry()
    run = registry.get(args.run_id)
    art = RunArtifacts(registry.run_dir(run.id))
    loaded = LoadedModel(art.run_dir)
    result = latency.measure(loaded, list(art.records["path"]), max_images=args.images)
    print(table([{k: v for k, v in result.items() if not isinstance(v, dict)}]))
    print("images/s by batch size:", {k: round(v, 2) for k, v in result["images_per_s_by_batch"].items()})
    return 0


def cmd_weights(args) -> int:
    from core import weights

    if args.action == "import":
        if not args.path:
            raise WorkbenchError("Say what to import: python -m core weights import PATH")
        imported = weights.import_weights(Path(args.path), args.name)
        print(f"imported '{imported.name}' into {imported.destination}")
        for rel, digest in imported.sha256.items():
            print(f"  {rel}  sha256 {digest}  {imported.known.get(rel, '')}")
        return 0
    print(table(weights.weights_overview()))
    return 0


def cmd_data(args) -> int:
    from core import datasets

    if args.action == "demo":
        print(f"demo dataset at {datasets.demo().path}")
    elif args.action == "import":
        if args.zip:
            report = datasets.import_zip(args.name, args.zip)
        else:
            if not args.normal:
                raise WorkbenchError("Give --normal DIR (and optionally --abnormal DIR, --masks DIR) or --zip FILE.")
            report = datasets.import_folder(args.name, args.normal, args.abnormal, args.masks)
        print(report.summary())
        for path, reason in report.skipped:
            print(f"  skipped {path}: {reason}")
    else:
        cfg = settings()
        print(f"MVTec AD root: {cfg.mvtec_root} (found: {', '.join(datasets.available_mvtec_categories()) or 'none'})")
        print(f"own datasets: {', '.join(datasets.list_custom()) or 'none'}")
    return 0


def cmd_cancel(args) -> int:
    from core import jobs

    run = jobs.cancel(args.run_id, force_after_s=args.force_after)
    print(f"run {run.id}: {run.status} {run.message}")
    return 0


def cmd_delete(args) -> int:
    from core.runs import RunRegistry

    RunRegistry().delete(args.run_id)
    try:
        from core.vectorstore import VectorStore

        VectorStore.open().delete_run(args.run_id)
    except (ImportError, WorkbenchError):
        pass
    print(f"deleted run {args.run_id}")
    return 0


def cmd_rerun(args) -> int:
    from core import jobs

    run = jobs.rerun(args.run_id)
    print(f"queued run {run.id} (same parameters as {args.run_id})")
    return 0


def cmd_index(args) -> int:
    from core.embeddings import index_run
    from core.inference import LoadedModel
    from core.runs import RunRegistry

    registry = RunRegistry()
    run = registry.get(args.run_id)
    result = index_run(run.id, LoadedModel(registry.run_dir(run.id)))
    registry.update(run.id, retrieval=result)
    print(json.dumps(result, indent=1))
    return 0


def cmd_export(args) -> int:
    from core.export import export_openvino
    from core.runs import RunRegistry

    registry = RunRegistry()
    run = registry.get(args.run_id)
    info = export_openvino(registry.run_dir(run.id))
    print(json.dumps(info, indent=1, default=str))
    return 0


def cmd_worker(args) -> int:
    from core.jobs import worker_loop

    worker_loop()
    return 0


def cmd_execute(args) -> int:
    from core.jobs import execute_claimed

    return 0 if execute_claimed(args.run_id) == "done" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Anomaly Workbench command line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train and evaluate a model (foreground with a progress bar)")
    p.add_argument("--model", default="patchcore", help="patchcore | efficientad")
    p.add_argument("--dataset", default="demo", help="demo | mvtec:<category> | folder:<imported name>")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="model parameter (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train-images", type=int, default=None, help="use a subset of the training images")
    p.add_argument("--background", action="store_true", help="queue it and return at once")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--status", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="a run's parameters, metrics and latency")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("predict", help="score images with a run's model")
    p.add_argument("run_id")
    p.add_argument("images", nargs="+")
    p.add_argument("--csv", default=None, help="also write the results to this CSV file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("benchmark", help="measure a run's inference latency again")
    p.add_argument("run_id")
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("weights", help="list or import backbone/teacher weights")
    p.add_argument("action", choices=["list", "import"], nargs="?", default="list")
    p.add_argument("path", nargs="?")
    p.add_argument("--name", default=None)
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("data", help="list datasets, import own images, make the demo dataset")
    p.add_argument("action", choices=["list", "import", "demo"], nargs="?", default="list")
    p.add_argument("name", nargs="?", default="mydata")
    p.add_argument("--normal")
    p.add_argument("--abnormal")
    p.add_argument("--masks")
    p.add_argument("--zip")
    p.set_defaults(func=cmd_data)

    for name, func, helptext in (("cancel", cmd_cancel, "cancel a queued or running run"),
                                 ("delete", cmd_delete, "delete a run and its files"),
                                 ("rerun", cmd_rerun, "queue a run again with the same parameters"),
                                 ("index", cmd_index, "(re)build a run's similarity index"),
                                 ("export", cmd_export, "export a run's model to OpenVINO (FP32, FP16), checked "
                                                        "against the torch scores")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("run_id")
        if name == "cancel":
            p.add_argument("--force-after", type=float, default=0.0, help="terminate after this many seconds")
        p.set_defaults(func=func)

    sub.add_parser("worker", help=argparse.SUPPRESS).set_defaults(func=cmd_worker)
    p = sub.add_parser("execute", help=argparse.SUPPRESS)
    p.add_argument("run_id")
    p.set_defaults(func=cmd_execute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
