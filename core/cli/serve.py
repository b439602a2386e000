"""Using a finished run's model: ``aw predict``, ``benchmark``, ``index`` (similarity search) and ``export``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

from core.cli.format import RUN_ID_HELP, add_run_command, fmt, table
from core.config import settings
from core.errors import WorkbenchError
from core.runtime import set_threads
from core.store.runs import RunRegistry


def cmd_predict(args) -> int:
    from core.engine.inference import LoadedModel  # torch: only the commands that run a model load it

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
        from core.views.csv_export import safe_cell  # pandas: only when a CSV is asked for

        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows([{k: safe_cell(v) for k, v in row.items()} for row in rows])
    return 0 if ok == len(preds) else 1


def cmd_benchmark(args) -> int:
    from core.engine import latency  # torch: only the commands that run a model load it
    from core.engine.inference import LoadedModel  # torch, as above
    from core.store.artifacts import RunArtifacts  # pandas: not for `aw --help` and the light commands

    set_threads(args.threads)
    registry = RunRegistry()
    run = registry.get(args.run_id)
    art = RunArtifacts(registry.run_dir(run.id))
    loaded = LoadedModel(art.run_dir)
    result = latency.measure(loaded, list(art.records["path"]), max_images=args.images)
    print(table([{k: v for k, v in result.items() if not isinstance(v, dict)}]))
    print("images/s by batch size:", {k: round(v, 2) for k, v in result["images_per_s_by_batch"].items()})
    return 0


def cmd_index(args) -> int:
    from core.engine.inference import LoadedModel  # torch: only the commands that run a model load it
    from core.similarity.embeddings import index_and_record  # torch, as above

    if args.run_id == "push":
        return cmd_index_push(args)
    if args.url:
        raise WorkbenchError("`index RUN_ID` takes no URL; to copy the index to a server: `index push URL`.")
    registry = RunRegistry()
    run = registry.get(args.run_id)
    result = index_and_record(run.id, LoadedModel(registry.run_dir(run.id)), registry=registry)
    print(json.dumps(result, indent=1))
    return 0


def cmd_index_push(args) -> int:
    """Copy the embedded similarity index (Qdrant Edge) to a Qdrant server."""
    if not args.url:
        raise WorkbenchError(
            "Say where to push: `aw index push http://qdrant-host:6333` (API key from AW_QDRANT_API_KEY)."
        )
    cfg = settings()
    if cfg.qdrant_url:
        raise WorkbenchError(
            "AW_QDRANT_URL is set, so the index already lives on a server; unset it to push the embedded one."
        )
    from core.similarity.vectorstore import VectorStore  # qdrant-client: 1.3 s to import, only here

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
    from core.engine.export import export_openvino  # torch: only the commands that run a model load it

    registry = RunRegistry()
    run = registry.get(args.run_id)
    info = export_openvino(registry.run_dir(run.id))
    print(json.dumps(info, indent=1, default=str))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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

    p = add_run_command(
        sub,
        "index",
        cmd_index,
        "(re)build a run's similarity index, or `index push URL`: copy the embedded index to a Qdrant server",
        run_id_help=RUN_ID_HELP + "; or 'push' to copy the whole embedded index to a Qdrant server",
    )
    p.add_argument(
        "url",
        nargs="?",
        default=None,
        help="with 'push': the server's URL, e.g. http://qdrant-host:6333 (AW_QDRANT_API_KEY for its key)",
    )
    add_run_command(
        sub, "export", cmd_export, "export a run's model to OpenVINO (FP32, FP16), checked against the torch scores"
    )
