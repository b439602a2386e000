"""How long a run will take and how much memory it will need, before it starts.

A run's cost grows with the data: PatchCore's feature extraction with the number of images, its coreset step
with patches x bank size, its memory with patches x feature size. The estimate reads the dataset (image count,
and the pixel size of a sample of files, from their headers only) and asks the model's registry entry for
the rest (``ModelEntry.estimate``, or the entry's ``Cost`` per image). Machine speed comes from a matrix-product
probe timed here (~0.15 s, once per process), scaled by the ratios measured on the reference machine by
``benchmarks/scaling.py`` and ``benchmarks/mvtec_benchmark.py``, so the figures follow a faster or slower machine
without new constants. ``benchmarks/scaling.py`` prints each estimate beside the measured run.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import psutil

from core import models
from core.data import datasets, images
from core.data.datasets import DatasetSpec
from core.models.cost import REFERENCE_GFLOPS, DatasetProfile, Estimate, estimate_from_cost, fmt_duration
from core.models.sizing import DATA_FREE_SIZE, HIGH_RES_SIZE, SizeChoice

__all__ = [
    "DatasetProfile",
    "Estimate",
    "SizeOptions",
    "estimate_from_cost",
    "estimate_run",
    "fmt_duration",
    "profile",
    "size_options",
    "size_profile",
    "speed_factor",
]

HEADER_SAMPLE = 24  # image headers read to learn a dataset's typical image size
# A run the launch form and CLI call long: a line-side demo allows ~15 minutes.
LONG_RUN_S = 15 * 60
# Share of the machine's available memory above which a run is likely to be killed or to swap.
MEMORY_WARN_SHARE = 0.8


@functools.cache
def gemm_gflops() -> float:
    """This machine's float32 matrix-product speed with torch's current threads (GFLOP/s): the best of five
    2048 x 512 x 2048 products (~25 ms each on 2 cores). Compute-bound on purpose: a tall, thin product spends its
    time writing its output and read half this machine's speed on a busy moment."""
    import torch  # torch: only when a run is first estimated, not at page start-up

    a, b = torch.randn(2048, 512), torch.randn(512, 2048)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048 * 512 * 2048 / best / 1e9


def speed_factor() -> float:
    """How much slower than the reference machine this one is (> 1: slower)."""
    return REFERENCE_GFLOPS / max(gemm_gflops(), 1e-3)


def profile(spec: DatasetSpec) -> DatasetProfile | None:
    """Image counts and a typical image size; None when the data is not on disk yet (MVTec before download)."""
    try:
        train = datasets.train_images(spec)
        test = datasets.test_samples(spec)
    except Exception:  # not downloaded yet, or unreadable: no estimate rather than an error
        return None
    if not train:
        return None
    step = max(1, len(train) // HEADER_SAMPLE)
    sizes = []
    for path in train[::step][:HEADER_SAMPLE]:
        wh = images.image_size(path)
        if wh:
            sizes.append(wh[0] * wh[1] / 1e6)
    return DatasetProfile(len(train), len(test), sum(sizes) / len(sizes) if sizes else 0.25)


def size_profile(spec: DatasetSpec) -> DatasetProfile | None:
    """What an image size can follow: the data's profile, or for an MVTec AD category not downloaded yet its published
    image size (no counts: nothing to estimate yet)."""
    prof = profile(spec)
    if prof is None and spec.kind == "mvtec" and spec.category in datasets.MVTEC_IMAGE_SIDE:
        return DatasetProfile(0, 0, datasets.MVTEC_IMAGE_SIDE[spec.category] ** 2 / 1e6)
    return prof


def estimate_run(model: str, params: dict, spec: DatasetSpec, prof: DatasetProfile | None = None) -> Estimate | None:
    """The model's estimate for this dataset on this machine, with warnings; None if it can't be estimated.
    ``prof``: the dataset's profile when the caller has read it already."""
    entry = models.get_entry(model)
    if entry.estimate is None and entry.cost is None:
        return None
    prof = prof or profile(spec)
    if prof is None:
        return None
    p, _ = models.resolve_for_data(model, params, prof)  # image_size 0: the size this data gets
    if entry.estimate is not None:
        est = entry.estimate(p, prof, speed_factor())
    else:
        est = estimate_from_cost(p, prof, speed_factor(), entry.cost, epochs=int(p.get("max_epochs", 1)))
    available = psutil.virtual_memory().available / 2**20
    if est.seconds > LONG_RUN_S:
        est.warnings.append(f"This run is long: about {est.seconds / 60:.0f} minutes on this machine.")
    if est.peak_mb > MEMORY_WARN_SHARE * available:
        est.warnings.append(
            f"It may need about {est.peak_mb / 1024:.1f} GB of memory and {available / 1024:.1f} GB "
            "are available: it may be killed or swap."
        )
    return est


@dataclass(frozen=True)
class SizeOptions:
    """What "follow the data" chose for one dataset, and the estimate of each size it chose between."""

    choice: SizeChoice
    estimates: dict[int, Estimate]  # image size -> the run's estimate at that size
    n_test: int

    def per_image_ms(self, size: int) -> float:
        est = self.estimates[size]
        return 1000 * est.parts.get("testing", 0.0) / max(self.n_test, 1)

    def summary(self) -> str:
        """'256 px: about 2 min 10 s in all, ~180 ms per test image · 512 px (chosen): …'"""
        chosen = self.choice.params["image_size"]
        return " · ".join(
            f"{size} px{' (chosen)' if size == chosen else ''}: about {fmt_duration(est.seconds)} in all, "
            f"fit {fmt_duration(est.fit_seconds)}, ~{self.per_image_ms(size):.0f} ms per test image"
            for size, est in sorted(self.estimates.items())
        )


def size_options(model: str, params: dict, spec: DatasetSpec) -> SizeOptions | None:
    """For a run whose image size follows the data: the size chosen for ``spec``, why, and what the data-free and
    the high-resolution size would each cost here. None where the size is given or not known before the run."""
    prof = profile(spec)
    p = models.resolve_params(model, params)
    choice = models.data_choice(model, p, prof)
    if prof is None or choice is None:
        return None
    estimates = {}
    for size in (DATA_FREE_SIZE, HIGH_RES_SIZE):
        alternative = {**p, **choice.params} if size == choice.params["image_size"] else {**p, "image_size": size}
        est = estimate_run(model, alternative, spec, prof)  # the headers read once, not once per size
        if est is not None:
            estimates[size] = est
    return SizeOptions(choice, estimates, prof.n_test)
