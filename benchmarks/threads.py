"""One image through a run's model under OpenMP's wait policies and thread counts, alone and beside a second process.

    .venv/bin/python benchmarks/threads.py --run RUN_ID [--run ...] [--images 8] [--repeats 5]

Why: the product sets ``OMP_WAIT_POLICY=PASSIVE`` (app.py, the CLI, the Makefile, training processes) so that
OpenMP threads sleep while they wait; with spinning threads torch collapsed when a second process needed the CPU.
A sleeping thread must be woken for every parallel operation, and one image through a small network is many short
operations. This measures each choice on the run's own model: the model's forward at batch 1 on preprocessed test
images (the torch fast path, ``core.engine.inference.LoadedModel``; its OpenVINO export with the same thread count
where the run has one), median over images of the median of ``--repeats`` calls — once alone, once while a second
process runs the same loop (the dashboard scoring while a training job runs). OpenMP reads its policy when it
starts, so every configuration runs in its own child process; ``AW_THREADS`` fixes the thread count there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (label, environment): sleeping threads, spinning ~0.1 ms then sleeping, and libgomp's default (~3 ms of spinning)
POLICIES = (
    ("passive", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("spin 0.1 ms", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}),
    ("default (spin ~3 ms)", {}),
)


def probe(run_id: str, images: int, repeats: int, seconds: float, openvino: bool) -> dict:
    """In the child: ms per forward (torch, and OpenVINO where exported), looping for at least ``seconds``."""
    import numpy as np
    import torch

    from core.engine.export import export_status
    from core.engine.inference import LoadedModel
    from core.runtime import set_threads, tune_malloc_for_inference
    from core.store.artifacts import RunArtifacts
    from core.store.runs import RunRegistry

    tune_malloc_for_inference()
    threads = set_threads()
    run_dir = RunRegistry().run_dir(run_id)
    loaded = LoadedModel(run_dir)
    paths = [str(p) for p in RunArtifacts(run_dir).records["path"]][:images]
    batches = [loaded.preprocess([loaded.read_image(p)]) for p in paths]
    forward = loaded._fast_forward or loaded.module.model
    paths_ms: dict[str, object] = {"torch": lambda b: forward(b)}
    if openvino and export_status(run_dir)[0]:
        from core.engine.export import OpenVinoModel

        ov = OpenVinoModel(run_dir, threads=threads)
        ov_batches = [b.numpy() for b in batches]
        paths_ms["openvino"] = lambda i: ov.forward(ov_batches[i])

    def timed(name: str) -> float:
        fn = paths_ms[name]
        inputs = list(range(len(batches))) if name == "openvino" else batches
        per_image, start = [], time.perf_counter()
        while True:
            for x in inputs:
                fn(x)  # warm
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fn(x)
                    ts.append((time.perf_counter() - t0) * 1000)
                per_image.append(float(np.median(ts)))
            if time.perf_counter() - start >= seconds:
                return float(np.median(per_image))

    with torch.inference_mode():
        return {"threads": threads, **{name: timed(name) for name in paths_ms}}


def child(run_id: str, env: dict, threads: int, args, seconds: float, openvino: bool = True) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full.update(env, AW_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--probe", run_id, "--images", str(args.images), "--repeats", str(args.repeats)]
    cmd += ["--seconds", str(seconds), *([] if openvino else ["--no-openvino"])]
    return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines and proc.returncode == 0:
        return json.loads(lines[-1])
    print(f"probe failed: {(err.strip().splitlines() or ['(no output)'])[-1]}", file=sys.stderr)
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="finished run id(s)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-openvino", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.images, args.repeats, args.seconds, not args.no_openvino)))
        return 0
    if not args.run:
        parser.error("name at least one finished run with --run")
    cores = os.cpu_count() or 1
    counts = sorted({1, cores})
    print(f"CPU: {cores} cores; load average at start: {os.getloadavg()}", flush=True)
    print("\n| run | OpenMP wait | threads | torch ms alone | torch ms beside a 2nd process | OpenVINO ms alone |")
    print("|---|---|---:|---:|---:|---:|")
    for run_id in args.run:
        for label, env in POLICIES:
            for n in counts:
                alone = result(child(run_id, env, n, args, 0))
                # both loop for the same wall time, so each is measured while the other one runs
                pair = [child(run_id, env, n, args, 10.0, openvino=False) for _ in range(2)]
                busy = [result(p) for p in pair]
                shared = max((b.get("torch", float("nan")) for b in busy), default=float("nan"))
                ov = alone.get("openvino")
                print(
                    f"| {run_id} | {label} | {n} | {alone.get('torch', float('nan')):.1f} | {shared:.1f} | "
                    + (f"{ov:.1f} |" if ov is not None else "– |"),
                    flush=True,
                )
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
