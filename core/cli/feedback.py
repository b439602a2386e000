"""``aw feedback`` / ``aw versions`` / ``aw undo``: correct a false call without retraining, from a terminal.

    aw feedback RUN_ID test/good/007.png --normal --note "glare, not a defect"
    aw feedback RUN_ID test/scratch/003.png --defect scratch
    aw versions RUN_ID
    aw undo RUN_ID
    aw feedback RUN_ID --retrain            # models without a memory bank: queue a run that trains on the normals

``register(sub)`` adds the commands to the main parser's sub-parsers. Errors are ``WorkbenchError`` subclasses, which
the main parser prints as one line (exit code 2).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from core.cli.format import RUN_ID_HELP
from core.config import settings
from core.errors import WorkbenchError
from core.jobs.feedback import retrain_with_feedback
from core.store.runs import RunRegistry
from core.store.versions import RunVersions


def _run_dir(run_id: str) -> Path:
    registry = RunRegistry(settings())
    registry.get(run_id)  # a clear RunError for an unknown id
    return registry.run_dir(run_id)


def cmd_feedback(args: argparse.Namespace) -> int:
    if args.retrain:
        new = retrain_with_feedback(args.run_id)
        print(f"queued run {new.id}: {new.model} on {new.dataset.get('category')} with the images marked normal")
        return 0
    if not args.image:
        raise WorkbenchError("Say which image: aw feedback RUN_ID IMAGE --normal | --defect TYPE")
    if not args.normal and not args.defect:
        raise WorkbenchError("Say what the image is: --normal (a false alarm) or --defect TYPE (an escape).")
    image = Path(args.image)
    if not image.is_file():
        raise WorkbenchError(f"No image file at {image}.")
    run_dir = _run_dir(args.run_id)
    from core.engine import feedback  # torch/anomalib: only `aw feedback` and `aw undo` load them

    if args.normal:
        result = feedback.mark_normal(run_dir, image, note=args.note, who=args.who)
    else:
        result = feedback.mark_defect(run_dir, image, args.defect, note=args.note, who=args.who)
    if result.warning:
        print(f"warning: {result.warning}")
    print(result.message)
    return 0


def versions_table(run_dir: Path) -> str:
    """The run's lineage as a plain text table; the current version is starred."""
    store = RunVersions(run_dir)
    current = store.current()
    rows = [
        [
            ("* " if v.version == current else "  ") + f"v{v.version}",
            f"v{v.parent}" if v.parent else "–",
            v.change,
            v.who,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(v.when)) if v.when else "–",
            v.note or "–",
        ]
        for v in store.lineage()
    ]
    head = ["version", "parent", "change", "who", "when", "note"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    marks = store.feedback()
    tail = f"\n{len(marks)} feedback mark(s); current version v{current} (* )." if marks else ""
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]) + tail


def cmd_versions(args: argparse.Namespace) -> int:
    print(versions_table(_run_dir(args.run_id)))
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    from core.engine import feedback  # torch/anomalib: only `aw feedback` and `aw undo` load them

    version = feedback.undo(_run_dir(args.run_id), who=args.who)
    print(f"run {args.run_id} is back at v{version.version} ({version.change}); the undone version is kept")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "feedback",
        help="mark an image normal (a false alarm) or defective (an escape) for a run",
        description="Mark an image normal (PatchCore: a new run version with its patches in the memory bank; other "
        "models: kept for 'Retrain with feedback') or as a defect of a type (kept with the run).",
    )
    p.add_argument("run_id", help=RUN_ID_HELP)
    p.add_argument("image", nargs="?", help="the image file")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--normal", action="store_true", help="the image is normal (a false alarm)")
    what.add_argument("--defect", metavar="TYPE", help="the image has a defect of this type (an escape)")
    what.add_argument("--retrain", action="store_true", help="queue a run that trains on the images marked normal")
    p.add_argument("--note", default="", help="why (kept in the run's lineage)")
    p.add_argument("--who", default=None, help="who decided (default: the current user)")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("versions", help="a run's versions: lineage, who, when, note; the current one starred")
    p.add_argument("run_id", help=RUN_ID_HELP)
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("undo", help="return a run to the parent of its current version")
    p.add_argument("run_id", help=RUN_ID_HELP)
    p.add_argument("--who", default=None, help="who undid it (default: the current user)")
    p.set_defaults(func=cmd_undo)
