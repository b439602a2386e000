"""``aw sweep``: one run per point of a parameter grid, queued as a group; ``aw sweep show`` reads it back with the
Pareto-optimal points and a recommendation (the Compare page's sweep view, in a terminal)."""

from __future__ import annotations

import argparse

from core.cli.format import parse_dataset, parse_params, table
from core.errors import WorkbenchError
from core.jobs import sweep
from core.models.cost import fmt_duration
from core.views import sweep as sweep_view


def cmd_sweep(args) -> int:
    if args.action == "list":
        groups = sweep.sweeps()
        print(table(groups) if groups else "no sweeps yet")
        return 0
    if args.action == "show":
        if not args.sweep_id:
            raise WorkbenchError("`aw sweep show SWEEP_ID`: which sweep? `aw sweep list` shows them.")
        runs = sweep.sweep_runs(args.sweep_id)
        frame = sweep_view.sweep_frame(runs)
        swept = sweep_view.swept_parameters(runs)
        print(table(sweep_view.marked(frame, args.quality, args.cost).to_dict("records")))
        print(sweep_view.recommend(frame, args.quality, args.cost, swept))
        return 0
    spec = parse_dataset(args.dataset)
    p = sweep.plan(args.model, spec, sweep.parse_assignments(args.values or []), parse_params(args.param))
    rows = [
        {
            **{name: point[name] for name in p.grid},
            "estimate": fmt_duration(e.seconds) if e else "–",
            "fit": fmt_duration(e.fit_seconds) if e else "–",
        }
        for point, e in zip(p.points, p.estimates, strict=True)
    ]
    print(table(rows))
    n = len(p.points)
    print(f"{n} run{'s' * (n != 1)} of {p.model} on {spec.label}; estimated in all: {fmt_duration(p.total_seconds)}")
    if not args.yes:
        print("Nothing queued: add --yes to queue these runs.")
        return 0
    runs = sweep.launch(p, seed=args.seed)
    tag = runs[0].extra["sweep"]["id"]
    print(f"queued {len(runs)} run{'s' * (len(runs) != 1)} as {tag}; follow them with `aw sweep show {tag}`")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train one run per point of a parameter grid and compare them as a group",
        description="Plan a sweep (every point with its estimate and the total), queue it with --yes, then read it "
        "back: `aw sweep list`, `aw sweep show SWEEP_ID` (each point, the Pareto-optimal ones, a recommendation).",
    )
    p.add_argument("action", nargs="?", default="plan", choices=["plan", "list", "show"], help="what to do")
    p.add_argument("sweep_id", nargs="?", default=None, help="the sweep to show (`aw sweep list` names them)")
    p.add_argument("--model", default="patchcore", help="the model to sweep (default: patchcore)")
    p.add_argument("--dataset", default="demo", help="demo | mvtec:<category> | folder:<imported name>")
    p.add_argument(
        "--values",
        action="append",
        metavar="NAME=V1,V2",
        help="a parameter and the values to try, repeatable: the sweep is every combination",
    )
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a parameter fixed for every point")
    p.add_argument("--seed", type=int, default=0, help="random seed of every run (default: 0)")
    p.add_argument("--yes", action="store_true", help="queue the runs (without it the plan is only printed)")
    p.add_argument("--quality", default="image_auroc", choices=list(sweep_view.QUALITY), help="quality axis for `show`")
    p.add_argument("--cost", default="fit_s", choices=list(sweep_view.COST), help="cost axis for `show`")
    p.set_defaults(func=cmd_sweep)
