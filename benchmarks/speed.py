"""Inference speed on MVTec AD grid: stock anomalib vs the workbench's PyTorch path vs OpenVINO, one table.

    MALLOC_MMAP_THRESHOLD_=131072 .venv/bin/python benchmarks/speed.py [--run RUN_ID ...] [--coreset 0.01 [0.1]]
        [--models padim stfpm ...] [--threads N] [--batch-sizes 2 4 8] [--efficientad]
        [--efficientad-untrained STEPS] [--no-rss]

For each PatchCore run (trained here with EfficientNet-Lite0 unless ``--run`` names finished ones), and
EfficientAD-S where asked (``--efficientad``: the real pretrained teacher; ``--efficientad-untrained STEPS``:
a random teacher, labelled timing-only, because it does the same arithmetic), in ONE process and on the
same 78 test images:

- **stock**: anomalib 2.7's documented predict path, ``Engine().predict(model=..., data_path=<grid>/test)``
  with the stock ``Patchcore`` (default pre/post-processor, evaluator and visualiser; batch 1 as Engine's
  predict loader has it), the run's weights loaded into it. Timed end to end (78 images / wall time); p50/p95
  are the intervals between consecutive predict batches (a Lightning callback). A forward hook on its torch
  model keeps the *raw* scores and maps: Engine.predict returns min-max-normalised scores (clamped to 0..1),
  so raw is compared with raw; the normalised output is also checked against our raw scores normalised
  with the same post-processor.
- **torch**: ``core.engine.inference.LoadedModel`` (decode + pre-process + forward + verdict);
- **openvino_fp32 / openvino_fp16**: ``core.engine.export.OpenVinoModel`` (exported first if needed).

After the table, the **floor** block (``benchmarks/floor.py``): each step of the torch path timed alone (decode,
pre-process, backbone, scoring, post-process, verdict), summed, beside end to end on the same images.

Our three paths are timed interleaved (blocks of 4 images, then batch by batch, rotating) so that they share
the machine's conditions. Peak RSS is measured per path in a child process (``--rss-probe``), because a
process's peak covers everything it ever ran. Results go into the run's ``latency["paths"]`` (the comparison
page) and ``runs/<id>/speed.json``.

Process settings, the same for every path: ``OMP_WAIT_POLICY=PASSIVE`` (``--omp-active`` to keep OpenMP's
spinning default, which collapses under a shared CPU) and glibc's large-block threshold restored
(``core.runtime.tune_malloc_for_inference``: the training setting ``MALLOC_MMAP_THRESHOLD_=131072``
doubles inference latency). Training, if needed, runs in a child process with the training environment.

One more row, **stock, seeds' env**: the same stock Engine.predict in a child process with the environment
the seeds measured stock in (``MALLOC_MMAP_THRESHOLD_=131072``, OpenMP's default spinning wait), so the
speed-up over what a user of stock anomalib gets is measured here rather than quoted (``--no-seed-env`` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":  # process settings; nothing of this when a test imports the helpers below
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # OpenMP threads that sleep while they wait (instead of spinning) keep torch usable on a shared CPU: with
    # the default (active) policy and other jobs running, a 2-thread forward pass took 5-10× longer here. Set
    # before torch is imported, so stock anomalib and our torch path run under the same policy.
    if "--omp-active" not in sys.argv and "--stock-probe" not in sys.argv:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # This process only scores images (training runs in a child process with the training environment), so
    # it undoes MALLOC_MMAP_THRESHOLD_=131072, which doubles inference latency; stock and our paths alike.
    from core.runtime import tune_malloc_for_inference

    if "--stock-probe" not in sys.argv:
        tune_malloc_for_inference()

import numpy as np  # noqa: E402

from core.config import settings  # noqa: E402
from core.data import datasets, images  # noqa: E402
from core.store.artifacts import RunArtifacts, write_json  # noqa: E402
from core.store.runs import DONE, RunRegistry  # noqa: E402

if "--rss-probe" not in sys.argv:  # the peak-RSS probes import only what their path needs
    from core import models  # noqa: E402
    from core.cli.format import fmt  # noqa: E402
    from core.engine import evaluation, latency  # noqa: E402
    from core.jobs import queue as jobs  # noqa: E402
    from core.models import weights  # noqa: E402

PATHS = ("stock", "torch", "openvino_fp32", "openvino_fp16")
COLUMNS = [
    "path",
    "model",
    "img/s b1",
    "p50 ms",
    "p95 ms",
    "img/s best (bs)",
    "peak RSS MB (b1 / batched)",
    "model MB",
    "image AUROC",
    "pixel AUROC",
    "max rel score diff vs stock",
    "b1 speed-up vs stock (same env / seeds' env)",
]
TOLERANCE = {"torch": 1e-4, "openvino_fp32": 1e-3}  # required agreement with stock's raw image scores
AUROC_TOLERANCE = 0.002


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ------------------------------------------------------------------------------------------- stock anomalib


def stock_module(run_dir: Path):
    """anomalib's own Lightning module for the run's model (``models.stock_module``: stock defaults for the
    post-processor, evaluator and visualiser), with the run's pre-processor and weights."""
    from safetensors.torch import load_file

    from core import models
    from core.engine.inference import _load_state

    spec = json.loads((run_dir / "model.json").read_text())
    try:
        module = models.stock_module(spec["model"], spec["params"])
    except Exception as exc:  # noqa: BLE001 - a model without a stock baseline
        raise SystemExit(f"no stock baseline for model {spec['model']}: {exc}") from exc
    _load_state(module, load_file(str(run_dir / "model.safetensors")))
    return module.eval()


def run_stock(run_dir: Path, data_path: Path, root: Path) -> dict:
    """Engine.predict on ``data_path``; wall time, per-batch intervals, raw and normalised outputs by path."""
    import torch
    from anomalib.engine import Engine
    from lightning.pytorch.callbacks import Callback

    t0 = time.perf_counter()
    module = stock_module(run_dir)
    load_s = time.perf_counter() - t0
    raw: list[tuple[np.ndarray, np.ndarray]] = []
    module.model.register_forward_hook(
        lambda mod, inp, out: raw.append(
            (
                out.pred_score.detach().float().reshape(-1).numpy().copy(),
                out.anomaly_map.detach().float().reshape(-1, *out.anomaly_map.shape[-2:]).numpy().copy(),
            )
        )
    )

    class Ticks(Callback):
        def __init__(self):
            self.ticks = []

        def on_predict_epoch_start(self, trainer, pl_module):
            self.ticks = [time.perf_counter()]

        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self.ticks.append(time.perf_counter())

    ticks = Ticks()
    t0 = time.perf_counter()
    engine = Engine(default_root_dir=root, callbacks=[ticks])
    predictions = engine.predict(model=module, data_path=data_path)
    wall = time.perf_counter() - t0
    visualised = sum(1 for f in Path(root).rglob("*") if f.suffix.lower() in (".png", ".jpg"))
    by_path, normalised = {}, {}
    flat = [
        (str(Path(p).resolve()), float(s))
        for b in predictions
        for p, s in zip(b.image_path, b.pred_score.reshape(-1), strict=False)
    ]
    raw_scores = np.concatenate([r[0] for r in raw])
    raw_maps = np.concatenate([r[1] for r in raw])
    for i, (path, norm) in enumerate(flat):
        by_path[path] = (float(raw_scores[i]), raw_maps[i])
        normalised[path] = norm
    intervals = np.diff(ticks.ticks) * 1000
    n = len(flat)
    return {
        "by_path": by_path,
        "normalised": normalised,
        "post_processor": module.post_processor,
        "timing": {
            "e2e_ms_p50": float(np.percentile(intervals, 50)),
            "e2e_ms_p95": float(np.percentile(intervals, 95)),
            "images_per_s_b1": n / wall,
            "images_per_s_best": n / wall,
            "best_batch_size": 1,
            "wall_s": wall,
            "model_load_s": load_s,
            "n_images": n,
            "visualised_files": visualised,
            "threads": torch.get_num_threads(),
        },
    }


# ------------------------------------------------------------------------------------------- our paths


def load_path(name: str, run_dir: Path, threads: int):
    from core.engine.export import OpenVinoModel
    from core.engine.inference import LoadedModel

    if name == "torch":
        return LoadedModel(run_dir)
    return OpenVinoModel(run_dir, name.split("_", 1)[1], threads=threads)


SWITCH_PAUSE_S = 0.05  # idle gap when the timing switches path (see time_paths)


def _switch(previous: str | None, name: str) -> None:
    """OpenVINO's worker threads keep spinning for a moment after an inference; a path timed right after
    would pay for that. A short untimed pause between paths (as between camera frames) removes the effect."""
    if previous is not None and previous != name:
        time.sleep(SWITCH_PAUSE_S)


def time_paths(scorers: dict, samples, batch_sizes, warmup: int = 2, block: int = 4) -> dict:
    """Interleaved timing of several scorers on the same images, so that they share the machine's
    conditions: batch 1 over every image in blocks of ``block`` images per path in rotating order (end to
    end: decode, pre-process, forward, verdict; scores and maps kept), then each batch size (throughput)."""
    names = list(scorers)
    for name in names:
        for s in samples[:warmup]:
            m = scorers[name]
            m.forward(m.preprocess([m.read_image(s.path)]))
    out = {n: {"e2e_ms": [], "model_ms": [], "scores": [], "maps": []} for n in names}
    previous = None
    for b, start in enumerate(range(0, len(samples), block)):
        for name in names[b % len(names) :] + names[: b % len(names)]:  # rotate who goes first
            _switch(previous, name)
            previous = name
            m, o = scorers[name], out[name]
            for s in samples[start : start + block]:
                t0 = time.perf_counter()
                batch = m.preprocess([m.read_image(s.path)])
                t1 = time.perf_counter()
                scores, maps = m.forward(batch)
                t2 = time.perf_counter()
                m.verdict(float(scores[0]))
                t3 = time.perf_counter()
                o["e2e_ms"].append((t3 - t0) * 1000)
                o["model_ms"].append((t2 - t1) * 1000)
                o["scores"].append(float(scores[0]))
                o["maps"].append(maps[0])
    for name in names:
        o = out[name]
        o["throughput"] = {1: len(samples) / (sum(o["e2e_ms"]) / 1000)}
    for bs in batch_sizes:
        spent = dict.fromkeys(names, 0.0)
        n_done = 0
        for start in range(0, len(samples) - bs + 1, bs):
            chunk = samples[start : start + bs]
            for name in names:
                _switch(previous, name)
                previous = name
                m = scorers[name]
                t0 = time.perf_counter()
                m.forward(m.preprocess([m.read_image(s.path) for s in chunk]))
                spent[name] += time.perf_counter() - t0
            n_done += bs
        for name in names:
            if n_done:
                out[name]["throughput"][bs] = n_done / spent[name]
    results = {}
    for name in names:
        o = out[name]
        tp = o["throughput"]
        best = max(tp, key=tp.get)
        results[name] = {
            "e2e_ms_p50": float(np.percentile(o["e2e_ms"], 50)),
            "e2e_ms_p95": float(np.percentile(o["e2e_ms"], 95)),
            "model_ms_p50": float(np.percentile(o["model_ms"], 50)),
            "model_ms_p95": float(np.percentile(o["model_ms"], 95)),
            "images_per_s_b1": tp[1],
            "images_per_s_best": tp[best],
            "best_batch_size": best,
            "images_per_s_by_batch": {str(k): v for k, v in tp.items()},
            "n_images": len(samples),
            "model_mb": scorers[name].model_mb(),
            "scores": np.array(o["scores"]),
            "maps": np.stack(o["maps"]),
        }
    return results


# ------------------------------------------------------------------------------------------- peak RSS (child)


def own_peak_rss_mb() -> float:
    """This process's peak RSS since it started its program (VmHWM). Not ``getrusage``: on Linux a child's
    ru_maxrss starts at its parent's RSS at fork time, so every probe reported the benchmark's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_probe(path: str, run_id: str, threads: int, n: int, batch_sizes) -> None:
    """Child process: load one path, score ``n`` test images as the timing does, print its peak RSS.
    Imports only what that path needs (the OpenVINO paths never import anomalib or Lightning)."""
    from core.runtime import set_threads

    set_threads(threads)
    cfg = settings()
    run = RunRegistry(cfg).get(run_id)
    run_dir = RunRegistry(cfg).run_dir(run_id)
    samples = datasets.test_samples(datasets.DatasetSpec.from_dict(run.dataset))
    picked = samples[:: max(1, len(samples) // n)][:n]
    if path == "stock":
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            folder.mkdir()
            for i, s in enumerate(picked):
                (folder / f"{i:03d}_{Path(s.path).name}").symlink_to(s.path)
            run_stock(run_dir, folder, Path(tmp) / "results")
        batch1 = batched = own_peak_rss_mb()  # Engine.predict's loader has batch 1
    else:
        m = load_path(path, run_dir, threads)
        for s in picked:
            m.verdict(float(m.forward(m.preprocess([m.read_image(s.path)]))[0][0]))
        batch1 = own_peak_rss_mb()
        for bs in batch_sizes:
            m.forward(m.preprocess([m.read_image(s.path) for s in picked[:bs]]))
        batched = own_peak_rss_mb()
    print(
        "RSS_JSON "
        + json.dumps(
            {"peak_rss_mb": batch1, "peak_rss_mb_batched": batched, "anomalib_imported": "anomalib" in sys.modules}
        ),
        flush=True,
    )


def child_rss(path: str, run_id: str, threads: int, batch_sizes) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--rss-probe",
        path,
        "--run",
        run_id,
        "--threads",
        str(threads),
        "--batch-sizes",
        *map(str, batch_sizes),
        *(["--omp-active"] if "--omp-active" in sys.argv else []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **jobs.child_env()})
    for line in proc.stdout.splitlines():
        if line.startswith("RSS_JSON "):
            return json.loads(line[9:])
    print(f"  (peak RSS probe for {path} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode})")
    return {}


# ------------------------------------------------------------- stock in the seeds' process environment (child)

SEED_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # and OpenMP's default (spinning) wait policy


def stock_probe(run_id: str) -> None:
    """Child process: stock Engine.predict on the grid test folder as the seeds ran it, timing included."""
    cfg = settings()
    run = RunRegistry(cfg).get(run_id)
    spec = datasets.DatasetSpec.from_dict(run.dataset)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_stock(RunRegistry(cfg).run_dir(run_id), spec.path / "test", Path(tmp))
    timing = {**result["timing"], "with_load_s": time.perf_counter() - t0, "peak_rss_mb": own_peak_rss_mb()}
    print("STOCK_JSON " + json.dumps(timing), flush=True)


def child_stock_seed_env(run_id: str) -> dict:
    """The stock path in the environment the seeds measured it in (0.47 images/s there, with another job
    running): ``MALLOC_MMAP_THRESHOLD_=131072`` set for training, and OpenMP threads spinning while they wait."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(SEED_ENV)
    cmd = [sys.executable, __file__, "--stock-probe", run_id]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("STOCK_JSON "):
            return json.loads(line[11:])
    print(
        f"  (stock probe in the seeds' environment failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode})"
    )
    return {}


# ------------------------------------------------------------------------------------------- main


def ensure_run(model: str, params: dict, spec, run_id: str | None) -> str:
    registry = RunRegistry(settings())
    if run_id:
        run = registry.get(run_id)
        if run.status != DONE:
            raise SystemExit(f"Run {run_id} is {run.status}, not done.")
        return run_id
    print(f"training {model} {params} on {spec.category} … (load average {loadavg()})", flush=True)
    run = jobs.submit(model, spec, params, start=False)
    t0 = time.perf_counter()
    # In a child process with the training environment (MALLOC_MMAP_THRESHOLD_ for the coreset step), as the
    # run queue's worker does; this process keeps its inference malloc settings.
    code = (
        "import sys; from core.jobs.queue import execute_claimed; "
        f"sys.exit(0 if execute_claimed({run.id!r}, index=False) == 'done' else 1)"
    )
    subprocess.run([sys.executable, "-c", code], env=jobs.child_env(), check=False)
    status = registry.get(run.id).status
    if status != DONE:
        raise SystemExit(f"Training run {run.id} ended {status}: {registry.get(run.id).error}")
    print(f"trained run {run.id} in {time.perf_counter() - t0:.0f} s", flush=True)
    return run.id


def pixel_masks(samples, shape) -> np.ndarray:
    masks = np.zeros((len(samples), *shape), dtype=bool)
    for i, s in enumerate(samples):
        if s.mask_path:
            masks[i] = images.read_mask(s.mask_path, shape=shape)
    return masks


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def benchmark_run(run_id: str, args) -> tuple[list[dict], list[str]]:
    import torch

    from core.engine.export import ExportError, export_openvino, export_status

    cfg = settings()
    registry = RunRegistry(cfg)
    run = registry.get(run_id)
    run_dir = registry.run_dir(run_id)
    art = RunArtifacts(run_dir)
    spec = datasets.DatasetSpec.from_dict(run.dataset)
    samples = datasets.test_samples(spec)
    labels = np.array([s.label for s in samples])
    defects = [s.defect_type for s in samples]
    problems: list[str] = []
    p = models.resolve_params(run.model, run.params, strict=False)
    if run.model == "patchcore":
        model_label = (
            f"patchcore {run.params.get('backbone', '')} coreset {run.params.get('coreset_sampling_ratio', '–')}"
        )
    elif "backbone" in p:
        model_label = f"{run.model} {p['backbone']}"
    else:
        model_label = f"{run.model}-{p.get('model_size', '')}" + (
            " (UNTRAINED teacher: timing only)" if p.get("teacher") == "untrained" else ""
        )

    ov_paths = []
    for precision in ("fp32", "fp16"):
        ok, why = export_status(run_dir, precision)
        if not ok and why != "OpenVINO is not installed":
            print(f"exporting {run_id} to OpenVINO ({why}) …", flush=True)
            try:
                export_openvino(run_dir)
            except ExportError as exc:  # a model the registry does not export (DFM, FRE): stock and torch only
                print(f"OpenVINO skipped: {exc}", flush=True)
                break
            ok, why = export_status(run_dir, precision)
        if ok:
            ov_paths.append(f"openvino_{precision}")
        else:
            print(f"OpenVINO {precision} skipped: {why}")

    print(f"[{run_id}] stock Engine.predict on {spec.path / 'test'} … (load average {loadavg()})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stock = run_stock(run_dir, spec.path / "test", Path(tmp))
    missing = [s.path for s in samples if str(Path(s.path).resolve()) not in stock["by_path"]]
    if missing:
        raise SystemExit(f"stock predict did not score {len(missing)} test images (e.g. {missing[0]})")
    stock_scores = np.array([stock["by_path"][str(Path(s.path).resolve())][0] for s in samples])
    stock_maps = np.stack([stock["by_path"][str(Path(s.path).resolve())][1] for s in samples])

    print(
        f"[{run_id}] our paths: torch, {', '.join(ov_paths) or 'no OpenVINO'} … (load average {loadavg()})", flush=True
    )
    scorers = {name: load_path(name, run_dir, args.threads) for name in ["torch", *ov_paths]}
    ours = time_paths(scorers, samples, args.batch_sizes)
    print(f"[{run_id}] timing done (load average {loadavg()})", flush=True)

    masks = pixel_masks(samples, stock_maps.shape[1:])
    results = {
        "stock": {
            **stock["timing"],
            "model_mb": art.checkpoint.stat().st_size / 2**20,
            "scores": stock_scores,
            "maps": stock_maps,
        },
        **ours,
    }
    for name, r in results.items():
        metrics = evaluation.evaluate(r["scores"], labels, defects, r["maps"], masks)
        r["image_auroc"], r["pixel_auroc"] = metrics["image_auroc"], metrics["pixel_auroc"]
        r["max_rel_score_diff_vs_stock"] = 0.0 if name == "stock" else rel_diff(r["scores"], stock_scores)
        r["max_map_diff_vs_stock"] = (
            0.0 if name == "stock" else float(np.max(np.abs(r["maps"] - stock_maps)) / np.max(np.abs(stock_maps)))
        )
    # Stock's returned (normalised) scores vs ours normalised by the same post-processor.
    post = stock["post_processor"]
    ours_norm = post._normalize(
        torch.from_numpy(results["torch"]["scores"]).float(), post.image_min, post.image_max, post.image_threshold
    ).numpy()
    stock_norm = np.array([stock["normalised"][str(Path(s.path).resolve())] for s in samples])
    norm_diff = float(np.max(np.abs(ours_norm - stock_norm)))

    for name, tol in TOLERANCE.items():
        if name in results and results[name]["max_rel_score_diff_vs_stock"] > tol:
            problems.append(
                f"{name}: image scores differ from stock by {results[name]['max_rel_score_diff_vs_stock']:.2e} "
                f"relative (required ≤ {tol:.0e})"
            )
    for name, r in results.items():
        for key in ("image_auroc", "pixel_auroc"):
            if r[key] is not None and abs(r[key] - results["stock"][key]) > AUROC_TOLERANCE:
                problems.append(f"{name}: {key} {r[key]:.4f} vs stock {results['stock'][key]:.4f}")
    if norm_diff > 1e-4:
        problems.append(f"torch scores normalised like stock differ from Engine.predict's by {norm_diff:.2e}")

    seed_env = {}
    if not args.no_seed_env:
        print(f"[{run_id}] stock Engine.predict in the seeds' process environment (child process) …", flush=True)
        seed_env = child_stock_seed_env(run_id)
    if not args.no_rss:
        print(f"[{run_id}] peak RSS per path (child processes) …", flush=True)
        for name in results:
            probe = child_rss(name, run_id, args.threads, args.batch_sizes)
            results[name]["peak_rss_mb"] = probe.get("peak_rss_mb")  # scoring one image at a time
            results[name]["peak_rss_mb_batched"] = probe.get("peak_rss_mb_batched")

    rows = []
    stock_b1, seed_b1 = results["stock"]["images_per_s_b1"], seed_env.get("images_per_s_b1")

    def speedup(ips: float) -> str:
        return f"{ips / stock_b1:.1f}×" + (f" / {ips / seed_b1:.1f}×" if seed_b1 else "")

    for name in [p for p in PATHS if p in results]:
        r = results[name]
        rows.append(
            {
                "path": name,
                "model": model_label,
                "img/s b1": r["images_per_s_b1"],
                "p50 ms": r["e2e_ms_p50"],
                "p95 ms": r["e2e_ms_p95"],
                "img/s best (bs)": f"{r['images_per_s_best']:.2f} ({r['best_batch_size']})",
                "peak RSS MB (b1 / batched)": (
                    f"{r['peak_rss_mb']:,.0f} / {r['peak_rss_mb_batched']:,.0f}"
                    if r.get("peak_rss_mb") and r.get("peak_rss_mb_batched")
                    else None
                ),
                "model MB": r["model_mb"],
                "image AUROC": f"{r['image_auroc']:.4f}",
                "pixel AUROC": f"{r['pixel_auroc']:.4f}",
                "max rel score diff vs stock": f"{r['max_rel_score_diff_vs_stock']:.1e}",
                "b1 speed-up vs stock (same env / seeds' env)": speedup(r["images_per_s_b1"]),
            }
        )
        if name == "stock" and seed_env:
            rows.append(
                {
                    "path": "stock, seeds' env",
                    "model": model_label,
                    "img/s b1": seed_b1,
                    "p50 ms": seed_env["e2e_ms_p50"],
                    "p95 ms": seed_env["e2e_ms_p95"],
                    "img/s best (bs)": f"{seed_b1:.2f} (1)",
                    "peak RSS MB (b1 / batched)": f"{seed_env['peak_rss_mb']:,.0f} / –",
                    "model MB": r["model_mb"],
                    "image AUROC": "same model",
                    "pixel AUROC": "same model",
                    "max rel score diff vs stock": "–",
                    "b1 speed-up vs stock (same env / seeds' env)": speedup(seed_b1),
                }
            )

    # Store in the run: latency["paths"] for the comparison page, the full record in speed.json.
    lat = dict(run.latency or {})
    lat["paths"] = {
        name: latency.path_entry(
            r,
            image_auroc=r["image_auroc"],
            pixel_auroc=r["pixel_auroc"],
            max_rel_score_diff_vs_stock=r["max_rel_score_diff_vs_stock"],
            model_ms_p50=r.get("model_ms_p50"),
            model_ms_p95=r.get("model_ms_p95"),
            peak_rss_mb_batched=r.get("peak_rss_mb_batched"),
            threads=args.threads,
        )
        for name, r in results.items()
    }
    if seed_env:
        lat["paths"]["stock_seed_env"] = latency.path_entry(
            {**seed_env, "model_mb": results["stock"]["model_mb"]}, environment=SEED_ENV, threads=args.threads
        )
    registry.update(run_id, latency=lat)
    write_json(art.latency_path, lat)
    write_json(
        run_dir / "speed.json",
        {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "environment": latency.environment(),
            "threads": args.threads,
            "batch_sizes": args.batch_sizes,
            "normalised_score_max_abs_diff": norm_diff,
            "stock_wall_s": stock["timing"]["wall_s"],
            "stock_model_load_s": stock["timing"]["model_load_s"],
            "stock_seeds_environment": {**seed_env, "environment": SEED_ENV, "omp_wait_policy": "(default)"}
            if seed_env
            else None,
            "paths": {name: {k: v for k, v in r.items() if k not in ("scores", "maps")} for name, r in results.items()},
            "problems": problems,
        },
    )
    print(
        f"[{run_id}] Engine.predict's normalised scores vs ours normalised by the same post-processor: "
        f"max abs diff {norm_diff:.1e}; stock predict wall {stock['timing']['wall_s']:.1f} s for "
        f"{stock['timing']['n_images']} images (+{stock['timing']['model_load_s']:.1f} s building/loading the model; "
        f"its visualiser wrote {stock['timing']['visualised_files']} image files)"
    )
    return rows, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="finished run id(s) to reuse (else train)")
    parser.add_argument("--coreset", nargs="*", type=float, default=[0.01])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=0, help="threads for torch and OpenVINO (0 = all cores)")
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=[2, 4, 8])
    parser.add_argument(
        "--models",
        nargs="*",
        default=[],
        metavar="MODEL",
        help="also these registry models with their defaults and --backbone (e.g. padim stfpm "
        "fastflow fre dfm), trained here unless --run names their runs",
    )
    parser.add_argument("--efficientad", action="store_true", help="also EfficientAD, if its pretrained teacher exists")
    parser.add_argument(
        "--efficientad-untrained",
        type=int,
        default=0,
        metavar="STEPS",
        help="also EfficientAD-S with an UNTRAINED teacher trained STEPS steps: timing and score "
        "equality only (same arithmetic), its AUROC is not an EfficientAD result",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the per-path peak-RSS child processes")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor block (each step of the path alone)")
    parser.add_argument("--omp-active", action="store_true", help="keep OpenMP's default (spinning) wait policy")
    parser.add_argument("--rss-probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stock-probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-seed-env", action="store_true", help="skip stock in the seeds' process environment")
    args = parser.parse_args()

    from core.runtime import set_threads

    args.threads = set_threads(args.threads or None)
    if args.stock_probe:
        stock_probe(args.stock_probe)
        return 0
    if args.rss_probe:
        rss_probe(args.rss_probe, args.run[0], args.threads, 16, args.batch_sizes)
        return 0

    cfg = settings()
    if not (cfg.mvtec_root / "grid" / "train" / "good").is_dir():
        print(f"MVTec AD grid not found under {cfg.mvtec_root} (set AW_MVTEC_ROOT); nothing to measure.")
        return 0
    spec = datasets.mvtec("grid", cfg=cfg)
    print(
        f"data: {spec.path}; threads: {args.threads}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}; "
        f"load average at start: {loadavg()}",
        flush=True,
    )
    run_ids = list(args.run) or [
        ensure_run("patchcore", {"backbone": args.backbone, "coreset_sampling_ratio": r}, spec, None)
        for r in args.coreset
    ]
    for name in args.models:
        params = {"backbone": args.backbone} if models.get_entry(name).backbone_stages else {}
        run_ids.append(ensure_run(name, params, spec, None))
    if args.efficientad:
        if weights.efficientad_teacher_available("small") and cfg.imagenet_dir:
            run_ids.append(ensure_run("efficientad", {"model_size": "small"}, spec, None))
        else:
            print(
                f"EfficientAD skipped: its pretrained teacher is not at {weights.efficientad_teacher_path('small')}"
                + ("" if cfg.imagenet_dir else " and AW_IMAGENET_DIR is not set")
                + " (an untrained-teacher run would not be a real EfficientAD result).",
                flush=True,
            )
    if args.efficientad_untrained:
        from benchmarks.efficientad_steps import bundled_penalty_dir

        penalty = cfg.datasets_dir / "bundled_photos"  # natural photos for the penalty loss (offline stand-in)
        bundled_penalty_dir(penalty)
        run_ids.append(
            ensure_run(
                "efficientad",
                {
                    "model_size": "small",
                    "teacher": "untrained",
                    "max_steps": args.efficientad_untrained,
                    "imagenet_dir": str(penalty),
                },
                spec,
                None,
            )
        )

    rows, problems = [], []
    for run_id in run_ids:
        r, p = benchmark_run(run_id, args)
        rows += r
        problems += p
    print(
        f"\nload average at end: {loadavg()}; CPU: {latency.cpu_model()}, {os.cpu_count()} cores, "
        f"{args.threads} threads\n"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(fmt(row.get(c)) for c in COLUMNS) + " |")
    print(
        "\nimages/s b1 and p50/p95: end to end per image (decode, pre-process, model, verdict); stock: "
        "Engine.predict wall time / 78 and the intervals between its predict batches. Scores compared raw."
    )
    if not args.no_floor:  # every per-image millisecond of the torch path, step by step (benchmarks/floor.py)
        from benchmarks.floor import floor, print_floor
        from core.engine.inference import LoadedModel

        floors = []
        for run_id in run_ids:
            loaded = LoadedModel(cfg.run_dir(run_id))
            paths = [str(p) for p in RunArtifacts(cfg.run_dir(run_id)).records["path"]][:16]
            floors.append((f"{loaded.model_name} {run_id}", floor(loaded, paths)))
        print_floor(floors)
    if problems:
        print("\nEQUALITY PROBLEMS:\n- " + "\n- ".join(problems))
        return 1
    print(
        "\nAll score-equality requirements met (torch ≤ 1e-4, OpenVINO FP32 ≤ 1e-3 relative to stock; "
        f"AUROCs within {AUROC_TOLERANCE})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
