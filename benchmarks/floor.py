"""Where every per-image millisecond goes: each step of the scoring path timed alone, summed, beside end to end.

    .venv/bin/python benchmarks/floor.py --run RUN_ID [--run ...] [--images 16] [--repeats 3]
    (benchmarks/speed.py prints the same block for the runs it measures)

The *floor* of a run's torch path at batch 1 is the sum of its steps, each timed alone on inputs prepared before:

- **decode**: the file to RGB (``RunModel.read_image``);
- **pre-process**: resize + normalise to the model's input (``LoadedModel.preprocess``);
- **backbone**: the pretrained feature extractor alone (PatchCore: backbone, pooling, layers concatenated);
- **scoring**: PatchCore's nearest-neighbour search over the bank and its re-weighted image score, timed alone;
  other models: the rest of their forward pass (Gaussian / flow / student), timed inside one forward by hooks;
- **post-process**: the anomaly map's resize and blur (PatchCore alone; others by a hook on anomalib's
  ``anomaly_map_generator`` where the model has one, else inside *scoring*) and the copy out of torch;
- **verdict**: score against the threshold.

**e2e** is ``core.engine.latency``'s end-to-end path on the same images (decode → verdict, one call each). e2e / floor
is what the glue costs: the goal is ≤ 1.15.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STEPS = ("decode", "pre-process", "backbone", "scoring", "post-process", "verdict")


def _median_ms(fn, inputs: list, repeats: int) -> float:
    """Median over images of the best of ``repeats`` calls (ms): each step at its own floor."""
    per_image = []
    for x in inputs:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - t0)
        per_image.append(best * 1000)
    return float(np.median(per_image))


def _patchcore_steps(loaded, batches: list, repeats: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from core.models.knn import nearest_patch

    fast = loaded._fast_forward
    m = fast.model
    embeds = [fast.embed(b) for b in batches]

    def scoring(e):
        rows = m.reshape_embedding(e)
        d, i = nearest_patch(rows, m.memory_bank, fast.bank_sq)
        return m.compute_anomaly_score(d.reshape(1, -1), i.reshape(1, -1), rows), d

    patch_scores = [scoring(e)[1].reshape(1, 1, *e.shape[-2:]) for e in embeds]
    size = batches[0].shape[-2:]

    def post(p):
        return fast.blur(F.interpolate(p, size=size)).reshape(size).float().numpy()

    with torch.inference_mode():
        return {
            "backbone": _median_ms(fast.embed, batches, repeats),
            "scoring": _median_ms(scoring, embeds, repeats),
            "post-process": _median_ms(post, patch_scores, repeats),
        }


def _hooked_steps(loaded, batches: list, repeats: int) -> dict[str, float]:
    """Backbone alone; scoring and post-process as parts of one forward (hooks on anomalib's submodules)."""
    import torch

    from core.models import get_entry

    entry = get_entry(loaded.model_name)
    model = loaded.module.model
    backbone_name = entry.feature_submodule or "feature_extractor"
    backbone = getattr(model, backbone_name)
    amg = getattr(model, "anomaly_map_generator", None)
    marks: dict[str, float] = {}

    def mark(name):
        return lambda *_a, **_k: marks.__setitem__(name, time.perf_counter())

    handles = [
        backbone.register_forward_pre_hook(mark("bb0")),
        backbone.register_forward_hook(mark("bb1")),
    ]
    if amg is not None:
        handles += [amg.register_forward_pre_hook(mark("amg0")), amg.register_forward_hook(mark("amg1"))]
    parts: dict[str, list[float]] = {"scoring": [], "post-process": [], "forward": []}
    try:
        with torch.inference_mode():
            for b in batches:
                best = None
                for _ in range(repeats):
                    marks.clear()
                    t0 = time.perf_counter()
                    loaded.forward(b)
                    t1 = time.perf_counter()
                    bb = marks["bb1"] - marks["bb0"]
                    post = marks["amg1"] - marks["amg0"] if "amg1" in marks else 0.0
                    if best is None or t1 - t0 < best[0]:
                        best = (t1 - t0, bb, post)
                total, bb, post = best
                parts["forward"].append(total * 1000)
                parts["post-process"].append(post * 1000)
                parts["scoring"].append((total - bb - post) * 1000)
    finally:
        for h in handles:
            h.remove()
    with torch.inference_mode():
        alone = _median_ms(backbone, batches, repeats)
    return {
        "backbone": alone,
        "scoring": float(np.median(parts["scoring"])),
        "post-process": float(np.median(parts["post-process"])),
    }


def floor(loaded, paths: list[str], repeats: int = 3) -> dict:
    """Each step's median ms (batch 1) on ``paths``, their sum, and e2e on the same images."""
    from core.engine import latency
    from core.engine.inference import FastPatchcore
    from core.runtime import threads

    rgbs = [loaded.read_image(p) for p in paths]
    batches = [loaded.preprocess([rgb]) for rgb in rgbs]
    loaded.forward(batches[0])  # warm-up: first calls allocate and pick kernels (and one image's thread count)
    steps = {
        "decode": _median_ms(loaded.read_image, paths, repeats),
        "pre-process": _median_ms(lambda rgb: loaded.preprocess([rgb]), rgbs, repeats),
    }
    with threads(getattr(loaded, "single_image_threads", None)):  # each step alone as the e2e path runs it
        if isinstance(loaded._fast_forward, FastPatchcore):
            steps.update(_patchcore_steps(loaded, batches, repeats))
        else:
            steps.update(_hooked_steps(loaded, batches, repeats))
    score = float(loaded.forward(batches[0])[0][0])
    steps["verdict"] = _median_ms(lambda s: loaded.verdict(s), [score] * len(paths), repeats)
    e2e = latency.measure(loaded, paths, batch_sizes=(), max_images=len(paths))["e2e_ms_p50"]
    total = sum(steps[s] for s in STEPS)
    return {**steps, "floor": total, "e2e": e2e, "e2e / floor": e2e / total}


def print_floor(rows: list[tuple[str, dict]]) -> None:
    cols = [*STEPS, "floor", "e2e", "e2e / floor"]
    print("\n**Floor** (ms per image at batch 1, each step alone; median over images of the best of the repeats)\n")
    print("| run | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, f in rows:
        print(f"| {name} | " + " | ".join(f"{f[c]:.2f}" if c != "e2e / floor" else f"{f[c]:.2f}×" for c in cols) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="finished run id(s)")
    parser.add_argument("--images", type=int, default=16, help="test images of each run to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from core.engine.inference import LoadedModel
    from core.runtime import set_threads, tune_malloc_for_inference
    from core.store.artifacts import RunArtifacts
    from core.store.runs import RunRegistry

    tune_malloc_for_inference()
    threads = set_threads(args.threads or None)
    rows = []
    for run_id in args.run:
        run_dir = RunRegistry().run_dir(run_id)
        paths = [str(p) for p in RunArtifacts(run_dir).records["path"]][: args.images]
        loaded = LoadedModel(run_dir)
        rows.append((f"{loaded.model_name} {run_id}", floor(loaded, paths, args.repeats)))
    print(f"threads: {threads}")
    print_floor(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
