"""What runs are made from: ``aw data`` (datasets), ``weights`` (backbone/teacher weights) and ``models``."""

from __future__ import annotations

import argparse
from pathlib import Path

from core import models
from core.cli.format import Bar, table
from core.config import settings
from core.data import datasets, importing
from core.errors import WorkbenchError
from core.models import weights


def cmd_models(args) -> int:
    for entry in models.REGISTRY.values():
        print(f"{entry.name}: {entry.label} - {entry.description}")
        defaults = models.default_params(entry.name)
        print(table([{"parameter": p.name, "default": defaults[p.name], "meaning": p.help} for p in entry.params]))
        print()
    return 0


def cmd_weights(args) -> int:
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the models and their parameters (defaults and meaning)")
    p.set_defaults(func=cmd_models)

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
