"""``aw …``: the same functions the dashboard uses, from a terminal.

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

HIDDEN_COMMANDS = ("worker", "execute")  # what the background worker runs; not for users, not in --help


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain aligned text table (readable in any terminal, pasteable as markdown)."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(vals: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"

    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value and abs(value) < 0.001:
            return f"{value:.0e}"  # a learning rate, not 0.000
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def parse_dataset(text: str, max_train_images: int | None = None):
    """'demo' | 'mvtec:<category>' | 'folder:<imported name>'."""
    from core.data import datasets

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
        "id": run.id,
        "status": run.status,
        "model": run.model,
        "dataset": run.dataset.get("category"),
        "image AUROC": m.get("image_auroc"),
        "pixel AUROC": m.get("pixel_auroc"),
        "image F1": m.get("image_f1"),
        "AUPRO": m.get("aupro"),
        "fit s": t.get("fit_s"),
        "img/s": lat.get("images_per_s_b1"),
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
    from core.engine import estimate
    from core.jobs import queue as jobs
    from core.store.runs import RunRegistry

    spec = parse_dataset(args.dataset, args.max_train_images)
    params = parse_params(args.param)
    run = jobs.submit(args.model, spec, params, args.seed, start=args.background)
    est = estimate.estimate_run(run.model, run.params, spec)
    if est is not None:
        print(est.summary())
        for warning in est.warnings:
            print(f"WARNING: {warning}")
    if args.background:
        print(f"queued run {run.id}; follow it with `aw show {run.id}`")
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

    lines = [
        f"run {run.id}  [{run.status}]  {run.model} on {run.dataset.get('category')} (seed {run.seed})",
        f"params: {json.dumps(run.params)}",
    ]
    lines += [f"WARNING: {w}" for w in models.model_warnings(run.model, run.params)]
    if run.error:
        lines.append(f"error: {run.error}")
    if run.status == "running":
        lines.append(f"phase: {run.phase} {run.progress:.0%}  {run.message}")
    m = run.metrics
    if m:
        keys = ["image_auroc", "pixel_auroc", "image_f1", "pixel_f1", "aupro", "fpr_at_full_recall", "image_threshold"]
        lines.append(table([{k: m.get(k) for k in keys}]))
        per = m.get("per_defect") or {}
        if per:
            lines.append(table([{"defect type": k, **v} for k, v in per.items()]))
    t, lat = run.timings, run.latency
    if lat:
        lines.append(
            table(
                [
                    {
                        "fit s": t.get("fit_s"),
                        "test s": t.get("test_s"),
                        "e2e ms p50": lat.get("e2e_ms_p50"),
                        "e2e ms p95": lat.get("e2e_ms_p95"),
                        "model ms p50": lat.get("model_ms_p50"),
                        "img/s b1": lat.get("images_per_s_b1"),
                        "img/s best": lat.get("images_per_s_best"),
                        "best batch": lat.get("best_batch_size"),
                        "peak RSS MB": lat.get("peak_rss_mb"),
                        "threads": lat.get("threads"),
                    }
                ]
            )
        )
        lines.append(f"cpu: {lat.get('cpu')}")
    if run.retrieval:
        lines.append(f"retrieval: {json.dumps(run.retrieval)}")
    return "\n".join(lines)


def cmd_runs(args) -> int:
    from core.store.runs import RunRegistry

    registry = RunRegistry()
    registry.recover_interrupted()
    print(table([run_row(r) for r in registry.list(status=args.status, limit=args.limit)]))
    return 0


def cmd_show(args) -> int:
    from core.store.runs import RunRegistry

    print(show_run(RunRegistry().get(args.run_id)))
    return 0


def cmd_models(args) -> int:
    from core import models

    for entry in models.REGISTRY.values():
        print(f"{entry.name}: {entry.label} - {entry.description}")
        defaults = models.default_params(entry.name)
        print(table([{"parameter": p.name, "default": defaults[p.name], "meaning": p.help} for p in entry.params]))
        print()
    return 0


def cmd_predict(args) -> int:
    from core.engine.inference import LoadedModel
    from core.runtime import set_threads
    from core.store.runs import RunRegistry

    set_threads()
    registry = RunRegistry()
    run = registry.get(args.run_id)
    loaded = LoadedModel(registry.run_dir(run.id))
    t0 = time.perf_counter()
    preds = loaded.predict([Path(p) for p in args.images], names=list(args.images))
    elapsed = time.perf_counter() - t0
    rows = [
        {
            "image": p.name,
            "score": p.score,
            "verdict": p.error and "ERROR" or ("anomalous" if p.is_anomalous else "normal"),
            "message": p.error or "",
        }
        for p in preds
    ]
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
    from core.engine import latency
    from core.engine.inference import LoadedModel
    from core.runtime import set_threads
    from core.store.artifacts import RunArtifacts
    from core.store.runs import RunRegistry

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
    from core import models
    from core.models import weights

    if args.action == "import":
        if not args.path:
            raise WorkbenchError("Say what to import: python -m core weights import PATH")
        imported = weights.import_weights(Path(args.path), args.name)
        print(f"imported '{imported.name}' into {imported.destination}")
        for rel, digest in imported.sha256.items():
            print(f"  {rel}  sha256 {digest}  {imported.known.get(rel, '')}")
        return 0
    print(table(models.weights_overview()))
    return 0


def cmd_data(args) -> int:
    from core.data import datasets, importing

    if args.action == "demo":
        print(f"demo dataset at {datasets.demo().path}")
    elif args.action == "import":
        bar = Bar()
        progress = lambda done, total: bar("reading images", done, total)  # noqa: E731
        try:
            if args.zip:
                report = importing.import_zip(args.name, args.zip, replace=args.replace, progress=progress)
            else:
                if not args.normal:
                    raise WorkbenchError(
                        "Give --normal DIR (and optionally --abnormal DIR, --masks DIR) or --zip FILE."
                    )
                report = importing.import_folder(
                    args.name,
                    args.normal,
                    args.abnormal,
                    args.masks,
                    normal_test_dir=args.normal_test,
                    test_fraction=args.test_fraction,
                    replace=args.replace,
                    progress=progress,
                )
        finally:
            bar.close()
        for line in report.lines():
            print(line)
        for path, reason in report.skipped:
            print(f"  skipped {path}: {reason}")
        print(f"train it: python -m core train --dataset folder:{report.spec.category}")
    else:
        cfg = settings()
        print(f"MVTec AD root: {cfg.mvtec_root} (found: {', '.join(datasets.available_mvtec_categories()) or 'none'})")
        own = datasets.list_custom()
        print(f"own datasets: {'' if own else 'none'}")
        for name in own:
            counts = datasets.import_info(datasets.custom(name)).get("counts", {})
            print(f"  folder:{name}  " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def cmd_cancel(args) -> int:
    from core.jobs import queue as jobs

    run = jobs.cancel(args.run_id, force_after_s=args.force_after)
    print(f"run {run.id}: {run.status} {run.message}")
    return 0


def cmd_delete(args) -> int:
    from core.store.runs import RunRegistry

    RunRegistry().delete(args.run_id)
    try:
        from core.similarity.vectorstore import VectorStore

        VectorStore.open().delete_run(args.run_id)
    except (ImportError, WorkbenchError):
        pass
    print(f"deleted run {args.run_id}")
    return 0


def cmd_rerun(args) -> int:
    from core.jobs import queue as jobs

    run = jobs.rerun(args.run_id)
    print(f"queued run {run.id} (same parameters as {args.run_id})")
    return 0


def cmd_index(args) -> int:
    from core.engine.inference import LoadedModel
    from core.similarity.embeddings import index_run
    from core.store.runs import RunRegistry

    if args.run_id == "push":
        return cmd_index_push(args)
    if args.url:
        raise WorkbenchError("`index RUN_ID` takes no URL; to copy the index to a server: `index push URL`.")
    registry = RunRegistry()
    run = registry.get(args.run_id)
    result = index_run(run.id, LoadedModel(registry.run_dir(run.id)))
    registry.update(run.id, retrieval=result)
    print(json.dumps(result, indent=1))
    return 0


def cmd_index_push(args) -> int:
    """Copy the embedded similarity index (Qdrant Edge) to a Qdrant server."""
    import os

    from core.config import settings
    from core.similarity.vectorstore import VectorStore

    if not args.url:
        raise WorkbenchError(
            "Say where to push: `aw index push http://qdrant-host:6333` (API key from AW_QDRANT_API_KEY)."
        )
    cfg = settings()
    if cfg.qdrant_url:
        raise WorkbenchError(
            "AW_QDRANT_URL is set, so the index already lives on a server; unset it to push the embedded one."
        )
    store = VectorStore.open(cfg)
    pushed = store.push_to_server(
        args.url,
        api_key=os.environ.get("AW_QDRANT_API_KEY") or None,
        progress=lambda c, n: print(f"  {c}: {n} points", flush=True) if n % 2048 == 0 else None,
    )
    for collection, n in pushed.items():
        print(f"pushed {n} points of {collection} to {args.url}")
    if not pushed:
        print("the embedded index is empty: nothing to push")
    return 0


def cmd_export(args) -> int:
    from core.engine.export import export_openvino
    from core.store.runs import RunRegistry

    registry = RunRegistry()
    run = registry.get(args.run_id)
    info = export_openvino(registry.run_dir(run.id))
    print(json.dumps(info, indent=1, default=str))
    return 0


def cmd_worker(args) -> int:
    from core.jobs.queue import worker_loop

    worker_loop()
    return 0


def cmd_execute(args) -> int:
    from core.jobs.queue import execute_claimed

    return 0 if execute_claimed(args.run_id) == "done" else 1


def build_parser() -> argparse.ArgumentParser:
    from core import models

    prog = "python -m core" if Path(sys.argv[0]).name == "__main__.py" else "aw"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Anomaly Workbench command line: the same engine as the dashboard.",
        epilog=f"`{prog} COMMAND --help` describes each command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train and evaluate a model (in the foreground, with a progress bar)",
        description="Train a model, test it, time it and index it for similarity search. Before it "
        "starts, the expected fit time and memory are printed.",
    )
    p.add_argument(
        "--model", default="patchcore", help=f"model to train: {' | '.join(models.REGISTRY)} (default: patchcore)"
    )
    p.add_argument("--dataset", default="demo", help="demo | mvtec:<category> | folder:<imported name> (default: demo)")
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a model parameter, repeatable (e.g. coreset_sampling_ratio=0.01); `aw models` lists them",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; the same seed, data and parameters give the same run (default: 0)",
    )
    p.add_argument(
        "--max-train-images",
        type=int,
        default=None,
        metavar="N",
        help="train on an evenly spaced subset of N training images (quick first look)",
    )
    p.add_argument(
        "--background", action="store_true", help="queue the run for the background worker and return at once"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list runs with their key metrics")
    p.add_argument(
        "--status",
        default=None,
        choices=["queued", "running", "done", "failed", "cancelled"],
        help="only runs in this state",
    )
    p.add_argument("--limit", type=int, default=50, help="at most this many runs, newest first (default: 50)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="a run's parameters, metrics, per-defect recall and latency")
    p.add_argument("run_id", help="the run's id (see `aw runs`)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("models", help="the models and their parameters (defaults and meaning)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("predict", help="score images with a run's model")
    p.add_argument("run_id", help="the run whose model scores the images")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, TIFF, WebP)")
    p.add_argument("--csv", default=None, metavar="FILE", help="also write the results to this CSV file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("benchmark", help="measure a run's inference latency again")
    p.add_argument("run_id", help="the run to time")
    p.add_argument("--images", type=int, default=40, help="how many of its test images to time (default: 40)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores, or AW_THREADS)")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("weights", help="list or import backbone/teacher weights (for air-gapped machines)")
    p.add_argument(
        "action",
        choices=["list", "import"],
        nargs="?",
        default="list",
        help="list: what is available; import: copy PATH into the weights folder (default: list)",
    )
    p.add_argument(
        "path",
        nargs="?",
        help="for import: a timm folder (config.json + model.safetensors) or a "
        "weights file such as pretrained_teacher_small.pth",
    )
    p.add_argument("--name", default=None, help="for import: the name to file it under (default: from the path)")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser(
        "data",
        help="list datasets, import own images (folders or a zip), make the demo dataset",
        description="Import own images: a folder of normal images, optionally abnormal images "
        "(sub-folders = defect types) and masks paired by file name; or a zip of the same "
        "or of MVTec AD's layout. Your files are not moved or changed.",
    )
    p.add_argument(
        "action",
        choices=["list", "import", "demo"],
        nargs="?",
        default="list",
        help="list: MVTec categories and imported datasets; import: import own images; demo: generate "
        "the synthetic demo dataset (default: list)",
    )
    p.add_argument(
        "name",
        nargs="?",
        default="mydata",
        help="for import: the dataset's name, used as --dataset folder:NAME (default: mydata)",
    )
    p.add_argument("--normal", metavar="DIR", help="folder of normal (good) images, searched with its sub-folders")
    p.add_argument("--abnormal", metavar="DIR", help="folder of abnormal images; its sub-folders name the defect types")
    p.add_argument(
        "--masks",
        metavar="DIR",
        help="folder of defect masks, paired with abnormal images by file name "
        "(x.png <-> x.png, x_mask.png or x_gt.png)",
    )
    p.add_argument(
        "--normal-test",
        metavar="DIR",
        help="folder of normal images kept for testing (default: hold out --test-fraction of --normal)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="share of the normal images held out for testing when --normal-test is not given (default: 0.2)",
    )
    p.add_argument("--zip", metavar="FILE", help="import this zip instead of folders")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace an imported dataset of the same name (refused while runs use it)",
    )
    p.set_defaults(func=cmd_data)

    for name, func, helptext in (
        ("cancel", cmd_cancel, "cancel a queued or running run"),
        ("delete", cmd_delete, "delete a run, its files and its similarity-index points"),
        ("rerun", cmd_rerun, "queue a run again with the same parameters"),
        (
            "index",
            cmd_index,
            "(re)build a run's similarity index, or `index push URL`: copy the embedded index to a Qdrant server",
        ),
        ("export", cmd_export, "export a run's model to OpenVINO (FP32, FP16), checked against the torch scores"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument(
            "run_id",
            help="the run's id (see `aw runs`)"
            + ("; or 'push' to copy the whole embedded index to a Qdrant server" if name == "index" else ""),
        )
        if name == "index":
            p.add_argument(
                "url",
                nargs="?",
                default=None,
                help="with 'push': the server's URL, e.g. http://qdrant-host:6333 (AW_QDRANT_API_KEY for its key)",
            )
        if name == "cancel":
            p.add_argument(
                "--force-after",
                type=float,
                default=0.0,
                metavar="SECONDS",
                help="terminate the run's process if it has not stopped after this many seconds",
            )
        p.set_defaults(func=func)

    # Internal commands (the background worker and what it runs): no help= keeps them out of the command list.
    sub.add_parser("worker").set_defaults(func=cmd_worker)
    p = sub.add_parser("execute")
    p.add_argument("run_id", help="a queued run to claim and execute in this process (what the worker runs)")
    p.set_defaults(func=cmd_execute)
    return parser


def run() -> None:
    """The ``aw`` console command and ``python -m core``: process settings first, then :func:`main`."""
    import os
    import warnings

    # Before torch loads OpenMP: spinning threads made torch 5-10x slower on a shared 2-core CPU (as app.py does).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from core.runtime import limit_heap_growth

    # Deprecation notices from inside timm/anomalib mean nothing to a user of this CLI.
    warnings.filterwarnings("ignore", category=FutureWarning)
    limit_heap_growth()  # before any training allocates (see core/memory.py)
    sys.exit(main())


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
