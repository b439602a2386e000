"""Every model's detection limit on one dataset, beside its AUROC: the smallest scratch, spot and stain it catches 95 %
of the time (at zero escapes and at its own threshold, strongest contrast measured).

    .venv/bin/python benchmarks/limit.py --dataset demo --small          # seconds per model: the conftest settings
    .venv/bin/python benchmarks/limit.py --dataset mvtec:grid --models patchcore padim dfm
    .venv/bin/python benchmarks/limit.py --runs RUN_ID RUN_ID ...        # finished runs (e.g. mvtec_benchmark.py's)

Each model is trained as a normal run (registry defaults on EfficientNet-Lite0, or ``--small``: the small settings the
tests use, 128 px) in a temporary artifacts folder unless ``--runs`` names finished runs of the current one. EfficientAD
is left out offline without its pretrained teacher (an untrained-teacher run is never presented as a result).
``core.engine.limit.detection_limit`` measures each (default grid: 3 shapes x 5 areas x 3 contrasts x 8 samples).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SMALL = {  # tests/conftest.py's small settings: a clear ranking on the demo texture in seconds on 2 cores
    "patchcore": {"backbone": "tf_efficientnet_lite0", "coreset_sampling_ratio": 0.05, "image_size": 128},
    "padim": {"image_size": 128},
    "dfm": {"image_size": 128},
    "stfpm": {"image_size": 128, "max_epochs": 8, "batch_size": 4},
    "fastflow": {"image_size": 128, "max_epochs": 5, "flow_steps": 2, "batch_size": 4},
    "fre": {"image_size": 128, "max_epochs": 10, "batch_size": 4},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="demo", help="demo | mvtec:<category> | folder:<name> (default: demo)")
    parser.add_argument("--models", nargs="+", default=None, help="models to train (default: all that can train here)")
    parser.add_argument("--runs", nargs="+", default=None, help="measure these finished runs instead of training")
    parser.add_argument("--small", action="store_true", help="the tests' small, fast settings (128 px)")
    parser.add_argument("--samples", type=int, default=None, help="defects per cell (default: the engine's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not args.runs:
        os.environ["AW_ARTIFACTS"] = tempfile.mkdtemp(prefix="aw-limit-bench-")
    from core import models
    from core.cli.format import parse_dataset, table
    from core.engine.limit import DEFAULT_CONTRASTS, DEFAULT_N_PER_CELL, detection_limit
    from core.jobs import queue as jobs
    from core.store.runs import DONE, RunRegistry

    registry = RunRegistry()
    run_ids = list(args.runs or [])
    if not run_ids:
        spec = parse_dataset(args.dataset)
        names = args.models or [m for m in models.REGISTRY if models.unavailable_reason(m) is None]
        for name in names:
            if name == "efficientad" and models.unavailable_reason(name) is not None:
                continue
            params = SMALL.get(name, {}) if args.small else {"backbone": "tf_efficientnet_lite0"}
            params = {k: v for k, v in params.items() if k in {p.name for p in models.get_entry(name).params}}
            run = jobs.submit(name, spec, params, seed=args.seed, start=False)
            status = jobs.execute_claimed(run.id)
            if status != DONE:
                print(f"{name}: {status} {registry.get(run.id).error}", file=sys.stderr)
                continue
            run_ids.append(run.id)

    rows = []
    for run_id in run_ids:
        run = registry.get(run_id)
        result = detection_limit(run_id, n_per_cell=args.samples or DEFAULT_N_PER_CELL, seed=args.seed)
        row = {
            "model": run.model,
            "category": run.category,
            "image AUROC": run.metrics.get("image_auroc"),
            "pixel AUROC": run.metrics.get("pixel_auroc"),
        }
        for point, label in (("zero_escape", "0 esc"), ("run", "thr")):
            for shape in result.shapes:
                hit = result.smallest_for(shape, point)
                px = None if hit is None or hit["area_px"] is None else hit["area_px"]
                row[f"{shape} {label}"] = "–" if px is None else f"{px} px ({100 * hit['area_fraction']:.2f} %)"
        row["limit s"] = result.seconds
        row["run"] = run_id
        rows.append(row)
        print("\n".join(result.statements()), flush=True)
    if rows:
        print(
            f"\nSmallest defect caught 95 % of the time (contrast {max(DEFAULT_CONTRASTS)}; '0 esc' = at zero escapes, "
            "'thr' = at the run's threshold; '–' = not even at 2 % of the image):"
        )
        print(table(rows))


if __name__ == "__main__":
    main()
