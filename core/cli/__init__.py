"""``aw …``: the same functions the dashboard uses, from a terminal.

    python -m core train --model patchcore --dataset mvtec:grid --param coreset_sampling_ratio=0.1
    python -m core runs
    python -m core show RUN_ID
    python -m core predict RUN_ID image1.png image2.jpg --csv results.csv
    python -m core weights import ../shared/weights/tf_efficientnet_lite0

Errors a user can fix are printed as one clear line (exit code 2), never as a traceback.

Each command group is a module (``runs``, ``data``, ``serve``) holding its handlers next to its parser
definitions; ``format`` holds what they share.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from pathlib import Path

from core.errors import WorkbenchError
from core.runtime import limit_heap_growth
from core.store import incidents

HIDDEN_COMMANDS = ("worker", "execute")  # what the background worker runs; not for users, not in --help

# The command groups, modules of this package registered in this order: each has ``register(sub)``, which adds
# its commands (parsers next to their handlers). A new group is one more name here.
COMMAND_GROUPS = ("runs", "data", "serve", "feedback", "trust", "sweep")

# The order of the commands in `--help` (and in the "invalid choice" message); commands not named here follow,
# in the order their groups registered them.
HELP_ORDER = (
    "train",
    "sweep",
    "runs",
    "show",
    "models",
    "predict",
    "benchmark",
    "weights",
    "data",
    "cancel",
    "delete",
    "rerun",
    "index",
    "export",
    *HIDDEN_COMMANDS,
)


def build_parser() -> argparse.ArgumentParser:
    prog = "python -m core" if Path(sys.argv[0]).name == "__main__.py" else "aw"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Anomaly Workbench command line: the same engine as the dashboard.",
        epilog=f"`{prog} COMMAND --help` describes each command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(sub)
    _sort_commands(sub)
    return parser


def _sort_commands(sub: argparse._SubParsersAction) -> None:
    """Put the registered commands in HELP_ORDER (a stable sort: unnamed ones keep their registration order)."""
    rank = {name: i for i, name in enumerate(HELP_ORDER)}
    sub._choices_actions.sort(key=lambda action: rank.get(action.dest, len(rank)))  # the `--help` list
    parsers = sorted(sub.choices.items(), key=lambda item: rank.get(item[0], len(rank)))
    sub.choices.clear()  # the same dict as the parser map argparse dispatches from: reorder it in place
    sub.choices.update(parsers)


def run() -> None:
    """The ``aw`` console command and ``python -m core``: process settings first, then :func:`main`."""
    # Before torch loads OpenMP: spinning threads made torch 5-10x slower on a shared 2-core CPU (as app.py does).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Deprecation notices from inside timm/anomalib mean nothing to a user of this CLI.
    warnings.filterwarnings("ignore", category=FutureWarning)
    limit_heap_growth()  # before any training allocates (see core/runtime.py)
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
    except Exception as exc:  # noqa: BLE001 - the guard at this entry: a line for the user, the traceback logged
        print(f"error: {incidents.record(exc, f'aw {args.command}')}", file=sys.stderr)
        return 1
