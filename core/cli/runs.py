"""Training runs: ``aw train``, ``runs``, ``show``, ``cancel``, ``delete``, ``rerun``, and the background worker's
``worker`` and ``execute`` (hidden from ``--help``)."""

from __future__ import annotations

import argparse
import contextlib

from core import models
from core.cli.format import RUN_ID_HELP, Bar, add_run_command, parse_dataset, parse_params, run_row, show_run, table
from core.engine import estimate
from core.errors import WorkbenchError
from core.jobs import queue as jobs
from core.store.runs import RunRegistry


def cmd_train(args) -> int:
    spec = parse_dataset(args.dataset, args.max_train_images)
    params = parse_params(args.param)
    run = jobs.submit(args.model, spec, params, args.seed, start=args.background)
    chosen = run.extra.get("chosen_for_data")
    if chosen:
        print(f"Image size (image_size=0 follows the data): {chosen['why']}")
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


def cmd_runs(args) -> int:
    registry = RunRegistry()
    registry.recover_interrupted()
    print(table([run_row(r) for r in registry.list(status=args.status, limit=args.limit)]))
    return 0


def cmd_show(args) -> int:
    print(show_run(RunRegistry().get(args.run_id)))
    return 0


def cmd_cancel(args) -> int:
    run = jobs.cancel(args.run_id, force_after_s=args.force_after)
    print(f"run {run.id}: {run.status} {run.message}")
    return 0


def cmd_delete(args) -> int:
    RunRegistry().delete(args.run_id)
    with contextlib.suppress(WorkbenchError):  # no reachable index: the run itself is gone, which is what counts
        from core.similarity.vectorstore import VectorStore  # qdrant-client: 1.3 s to import, only here

        VectorStore.open().delete_run(args.run_id)
    print(f"deleted run {args.run_id}")
    return 0


def cmd_rerun(args) -> int:
    run = jobs.rerun(args.run_id)
    print(f"queued run {run.id} (same parameters as {args.run_id})")
    return 0


def cmd_worker(args) -> int:
    jobs.worker_loop()
    return 0


def cmd_execute(args) -> int:
    return 0 if jobs.execute_claimed(args.run_id) == "done" else 1


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("run_id", help=RUN_ID_HELP)
    p.set_defaults(func=cmd_show)

    p = add_run_command(sub, "cancel", cmd_cancel, "cancel a queued or running run")
    p.add_argument(
        "--force-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="terminate the run's process if it has not stopped after this many seconds",
    )
    add_run_command(sub, "delete", cmd_delete, "delete a run, its files and its similarity-index points")
    add_run_command(sub, "rerun", cmd_rerun, "queue a run again with the same parameters")

    # Internal commands (the background worker and what it runs): no help= keeps them out of the command list.
    sub.add_parser("worker").set_defaults(func=cmd_worker)
    p = sub.add_parser("execute")
    p.add_argument("run_id", help="a queued run to claim and execute in this process (what the worker runs)")
    p.set_defaults(func=cmd_execute)
