"""Where a whole default run's time goes, phase by phase, on a user-sized own folder: the run costs its fit.

    .venv/bin/python benchmarks/run_phases.py [--sizes 1000] [--models patchcore]

Real data at a user's scale: MVTec AD grid's 1024² images cut into 256² tiles (``benchmarks/scaling.py``), an
evenly spaced ``--sizes`` of the 4,224 normal train tiles plus the same 561 test tiles, imported the way a user
imports a folder and trained by the product in a child process (``python -m core execute``) with the model's
registry defaults. Printed per run: the estimate shown before launch, each phase's measured seconds (fit and its
parts, test, timing, indexing), the whole wall time and indexing's share of it. Then, for the before/after, the
time indexing took before vectors were pooled during the run (a scoring pass over every test and training image),
then re-indexed without them (a run from before: test images scored again, training images through the backbone),
with retrieval precision@5 (same defect type, leave-one-out over the test images) for each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scaling import GRID, make_user_folders, subset  # noqa: E402


def _p5(retrieval: dict, using: str) -> str:
    table = retrieval.get(using, {}).get("same_defect_type") or {}
    value = table.get("5", table.get(5))
    return "–" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--models", nargs="+", default=["patchcore"])
    parser.add_argument("--no-reindex", action="store_true", help="skip the before/after re-index")
    args = parser.parse_args()
    if not (GRID / "train" / "good").is_dir():
        print(f"needs real MVTec AD grid at {GRID}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="aw-phases-"))
    os.environ.update({"AW_ARTIFACTS": str(work / "artifacts"), "AW_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    from core.data import datasets, images, importing
    from core.engine import estimate
    from core.engine.inference import LoadedModel
    from core.jobs import queue as jobs
    from core.jobs.queue import child_env
    from core.similarity.embeddings import embed, index_run
    from core.store.artifacts import RunArtifacts
    from core.store.runs import RunRegistry

    user = work / "user_files"
    counts = make_user_folders(user)
    print(f"tiles: {counts}; work folder {work}", flush=True)
    rows = []
    for n in args.sizes:
        importing.import_folder(
            f"grid{n}",
            subset(user / "normal", n, work / f"normal{n}"),
            user / "abnormal",
            user / "masks",
            normal_test_dir=user / "normal_test",
        )
        spec = datasets.custom(f"grid{n}")
        for model in args.models:
            est = estimate.estimate_run(model, {}, spec)
            run = jobs.submit(model, spec, {}, start=False)
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "core", "execute", run.id],
                cwd=ROOT,
                env=child_env(),
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - t0
            done = RunRegistry().get(run.id)
            if done.status != "done":
                print(f"run {run.id} {done.status}: {done.error}")
                return 1
            t = done.timings
            row = {
                "model": model,
                "images": f"{n} + {counts['normal_test'] + counts['abnormal']}",
                "estimate": f"{est.seconds:.0f} s (fit {est.fit_seconds:.0f}, indexing {est.parts['indexing']:.0f})",
                "fit s": t["fit_s"],
                "of which coreset s": t.get("coreset_s"),
                "training-image vectors s": done.extra.get("coreset", {}).get("train_vectors_s"),
                "test s": t["test_s"],
                "timing s": t.get("timing_s"),
                "indexing s": t.get("index_s"),
                "run wall s": wall,
                "indexing share": t.get("index_s", 0) / wall,
                "p@5 defect": _p5(done.retrieval, "defect"),
                "p@5 global": _p5(done.retrieval, "global"),
            }
            if not args.no_reindex:
                art = RunArtifacts(RunRegistry().run_dir(run.id))
                loaded = LoadedModel(art.run_dir)
                paths = [str(p) for p in art.vectors()["test_paths"]] + [str(p) for p in art.vectors()["train_paths"]]
                t0 = time.perf_counter()  # what indexing did before: a scoring pass per image, test and train
                for start in range(0, len(paths), 8):
                    embed(loaded, [images.read_image(p) for p in paths[start : start + 8]])
                row["indexing s before (scoring pass per image)"] = time.perf_counter() - t0
                art.vectors_path.unlink()  # a run from before vectors were stored: test scored, train backbone-only
                t0 = time.perf_counter()
                again = index_run(run.id, loaded)
                row["indexing s without stored vectors"] = time.perf_counter() - t0
                row["p@5 defect without stored vectors"] = _p5(again, "defect")
            rows.append(row)
            for key, value in row.items():
                print(f"| {key} | {value:,.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
            print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
