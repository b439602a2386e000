"""``aw audit`` and ``aw limit``: can I trust my 'good' folder, and what is the smallest defect my model catches?

    aw audit demo                                  # k-fold PatchCore scores every training image; ranked table
    aw audit mvtec:grid --folds 4 --top 20
    aw audit demo --exclude 013.png --reason "scratch at the edge"   # recorded; the files are not touched
    aw audit demo --include 013.png                                   # undo
    aw limit RUN_ID                                # synthetic scratches/spots/stains; smallest caught 95 %
    aw limit RUN_ID --shapes scratch spot --samples 16 --seed 1

``register(sub)`` adds both commands to the ``aw`` parser's sub-commands (add "trust" to ``core.cli.COMMAND_GROUPS``).
Errors a user can fix are ``WorkbenchError``s, printed by ``core.cli.main`` as one line.
"""

from __future__ import annotations

import argparse

from core.cli.format import Bar, parse_dataset, table
from core.data import exclusions
from core.data.defects import DEFAULT_AREAS, DEFAULT_CONTRASTS, DEFAULT_N_PER_CELL, DEFECT_SHAPES
from core.errors import WorkbenchError


def cmd_audit(args: argparse.Namespace) -> int:
    from core.engine.audit import audit_dataset, load_audit  # torch: only `aw audit` loads it

    spec = parse_dataset(args.dataset)
    if args.exclude or args.include:
        if args.exclude and args.include:
            raise WorkbenchError("Use --exclude or --include, not both at once.")
        if args.exclude:
            now = exclusions.exclude_images(spec, args.exclude, reason=args.reason or "")
        else:
            now = exclusions.include_images(spec, args.include)
        print(f"excluded from {args.dataset} now: {', '.join(now) if now else '(none)'}")
        print(f"runs queued from now on train without them: aw train --dataset {args.dataset}")
        print("your image files were not changed; the record is " + str(exclusions.exclusions_path(spec)))
        return 0
    result = load_audit(spec) if args.stored else None
    if result is None:
        if args.stored:
            print("no stored audit yet: auditing now")
        bar = Bar()
        try:
            result = audit_dataset(spec, k=args.folds, seed=args.seed, progress=bar)
        finally:
            bar.close()
    rows = [
        {
            "rank": e.rank,
            "image": e.name,
            "score": e.score,
            "robust z": round(e.robust_z, 1),
            "suspicious": "yes" if e.suspicious else "",
            "excluded": "yes" if e.excluded else "",
            "fold": e.fold,
        }
        for e in result.top(args.top)
    ]
    print(table(rows))
    print(result.statement())
    if result.n_suspicious:
        worst = [e.name for e in result.entries if e.suspicious and not e.excluded][:5]
        if worst:
            print(f"look at them, then e.g.: aw audit {args.dataset} --exclude {' '.join(worst)} --reason '...'")
    return 0


def cmd_limit(args: argparse.Namespace) -> int:
    from core.engine.limit import POINTS, detection_limit  # torch: only `aw limit` loads it

    bar = Bar()
    try:
        result = detection_limit(
            args.run_id,
            shapes=args.shapes,
            areas=args.areas,
            contrasts=args.contrasts,
            n_per_cell=args.samples,
            seed=args.seed,
            progress=lambda done, total: bar("synthetic defects", done, total),
        )
    finally:
        bar.close()
    t = result.thresholds
    print(
        f"run {result.run_id} ({result.model} on {result.category}): {len(result.cells) * result.n_per_cell} "
        f"synthetic defects on {result.n_normal_images} held-out normal images, {result.seconds:.0f} s"
    )
    print(
        "thresholds: run "
        + ("–" if t["run"] is None else f"{t['run']:.4g}")
        + ", zero escapes "
        + ("–" if t["zero_escape"] is None else f"{t['zero_escape']:.4g} (the lowest score of the real defects)")
    )
    rows = []
    for row in result.smallest:
        rows.append(
            {
                "shape": row["shape"],
                "contrast": row["contrast"],
                "threshold": row["point"].replace("_", " "),
                "smallest caught 95 % (px)": row["area_px"],
                "% of image": None if row["area_fraction"] is None else f"{row['area_fraction']:.3%}",
            }
        )
    print(table(rows))
    for point in POINTS:
        if t.get(point) is not None:
            print("\n".join(result.statements(point)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``audit`` and ``limit`` to the ``aw`` sub-commands."""

    p = sub.add_parser(
        "audit",
        help="find defective images in a training set (k-fold PatchCore), exclude or include them",
        description="Score every training image with a PatchCore fitted on the other folds, so each image is "
        "judged by a model that never saw it; print the most anomalous. --exclude/--include record which images "
        "future runs leave out (your files are not changed).",
    )
    p.add_argument("dataset", help="demo | mvtec:<category> | folder:<imported name>")
    p.add_argument("--folds", type=int, default=4, metavar="K", help="number of folds (default: 4)")
    p.add_argument("--top", type=int, default=20, metavar="N", help="show the N most anomalous images (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold split and coreset (default: 0)")
    p.add_argument("--stored", action="store_true", help="show the stored audit instead of auditing again")
    p.add_argument("--exclude", nargs="+", metavar="IMAGE", help="leave these training images out of future runs")
    p.add_argument("--include", nargs="+", metavar="IMAGE", help="take excluded images back into the training set")
    p.add_argument("--reason", default="", help="with --exclude: why (kept in the record)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "limit",
        help="a run's detection limit: the smallest synthetic scratch/spot/stain it catches 95 %% of the time",
        description="Paste synthetic defects of controlled size and contrast onto the run's held-out normal test "
        "images, score them with the run's model, and report recall against defect area at the run's threshold "
        "and at zero escapes. Stored with the run (limit.json) for the Compare page and the HTML report.",
    )
    p.add_argument("run_id", help="a finished run (see `aw runs`)")
    p.add_argument(
        "--shapes", nargs="+", default=list(DEFECT_SHAPES), choices=DEFECT_SHAPES, help="defect shapes (default: all)"
    )
    p.add_argument(
        "--areas",
        nargs="+",
        type=float,
        default=list(DEFAULT_AREAS),
        metavar="FRACTION",
        help="defect areas as shares of the image (default: " + " ".join(f"{a:g}" for a in DEFAULT_AREAS) + ")",
    )
    p.add_argument(
        "--contrasts",
        nargs="+",
        type=float,
        default=list(DEFAULT_CONTRASTS),
        metavar="STEP",
        help="grey-level steps as shares of full scale (default: "
        + " ".join(f"{c:g}" for c in DEFAULT_CONTRASTS)
        + ")",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_N_PER_CELL,
        metavar="N",
        help=f"defects per shape, contrast and area (default: {DEFAULT_N_PER_CELL})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic defects (default: 0)")
    p.set_defaults(func=cmd_limit)
