"""Latency, measured apart from training, after warm-up, with the machine it ran on recorded beside it.

- model-only: the forward pass on an already pre-processed batch;
- end-to-end: decode the file + pre-process + forward + post-process (what a line-side camera would see);
- at batch 1 and at each batch size tried, with images/s; the best batch size is reported.

``measure`` times any scorer with the ``LoadedModel`` interface (``preprocess`` / ``forward`` / ``verdict``,
optionally ``read_image``): the PyTorch path or ``core.engine.export.OpenVinoModel``. Its result carries a ``paths``
dict, one entry per inference path measured (``path_entry``); benchmarks/speed.py adds "stock",
"openvino_fp32" and "openvino_fp16" beside "torch" and stores it as ``run.latency["paths"]``.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from core.data import images


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Versions and hardware recorded with every run."""
    # anomalib/timm: seconds to import, for two version strings; importing this module needs only torch
    import anomalib
    import timm

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "anomalib": anomalib.__version__,
        "timm": timm.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "platform": platform.platform(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    From /proc/self/status VmHWM, not ``getrusage``: Linux keeps ``ru_maxrss`` across ``execve``, so a child
    started by a large process (a benchmark holding gigabytes) reported its parent's size as its own peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


# What every entry of ``latency["paths"]`` holds (the comparison page's chart reads these).
PATH_FIELDS = (
    "e2e_ms_p50",
    "e2e_ms_p95",
    "images_per_s_b1",
    "images_per_s_best",
    "best_batch_size",
    "peak_rss_mb",
    "model_mb",
)


def path_entry(result: dict, **extra) -> dict:
    """The ``latency["paths"][name]`` entry of one measurement (PATH_FIELDS plus anything in ``extra``)."""
    return {**{f: result.get(f) for f in PATH_FIELDS}, **extra}


def measure(loaded, paths: list[str], batch_sizes=(4, 8), max_images: int = 16, warmup: int = 2) -> dict:
    """Time ``loaded`` (an inference.LoadedModel or export.OpenVinoModel) on up to ``max_images`` of ``paths``."""
    paths = list(paths)[:max_images]
    if not paths:
        return {}
    read = getattr(loaded, "read_image", images.read_image)
    for p in paths[:warmup]:  # first calls allocate and pick kernels; never timed
        loaded.forward(loaded.preprocess([read(p)]))

    model_ms, e2e_ms = [], []
    for p in paths:
        t0 = time.perf_counter()
        rgb = read(p)
        batch = loaded.preprocess([rgb])
        t1 = time.perf_counter()
        scores, maps = loaded.forward(batch)
        t2 = time.perf_counter()
        loaded.verdict(float(scores[0]))
        t3 = time.perf_counter()
        model_ms.append((t2 - t1) * 1000)
        e2e_ms.append((t3 - t0) * 1000)

    throughput = {1: 1000.0 / float(np.mean(e2e_ms))}
    for bs in batch_sizes:
        if bs > len(paths):
            continue
        n_batches = max(1, len(paths) // bs)
        t0 = time.perf_counter()
        for i in range(n_batches):
            chunk = paths[i * bs : (i + 1) * bs]
            loaded.forward(loaded.preprocess([read(p) for p in chunk]))
        throughput[bs] = n_batches * bs / (time.perf_counter() - t0)
    best = max(throughput, key=throughput.get)
    m50, m95 = _percentiles(model_ms)
    e50, e95 = _percentiles(e2e_ms)
    name = getattr(loaded, "path_name", "torch")
    model_mb = loaded.model_mb() if hasattr(loaded, "model_mb") else None
    result = {
        "path": name,
        "n_images": len(paths),
        "model_ms_p50": m50,
        "model_ms_p95": m95,
        "e2e_ms_p50": e50,
        "e2e_ms_p95": e95,
        "images_per_s_b1": throughput[1],
        "images_per_s_by_batch": {str(k): v for k, v in throughput.items()},
        "best_batch_size": best,
        "images_per_s_best": throughput[best],
        "peak_rss_mb": peak_rss_mb(),
        "model_mb": model_mb,
        "threads": getattr(loaded, "threads", None) or torch.get_num_threads(),
        # torch's path at batch 1 runs on the count it measured faster (core.runtime.fastest_threads)
        "threads_single_image": getattr(loaded, "single_image_threads", None),
        "cpu": cpu_model(),
    }
    result["paths"] = {name: path_entry(result)}
    return result
