"""Process tuning: glibc's heap (training vs inference) and torch's threads. The ground floor: imports nothing of core.

Keep glibc from hoarding freed memory during PatchCore's coreset step.

Seen here: without this, each coreset iteration of anomalib's sampler left ~16 MB in malloc's heap and a fit
was OOM-killed at 24 GB. Serving large allocations with mmap returns them to the OS on free. Child processes
start with the same setting through ``MALLOC_MMAP_THRESHOLD_`` (core.config.TRAINING_ENV); this covers a
process that is already running, such as a foreground ``aw train``.

The setting makes every tensor over 128 KB a fresh, page-faulted mmap, which halves the speed of feature
extraction and inference; so a run uses ``tune_malloc_for_inference`` for those and PatchCore
switches to this setting only around its coreset step (``heap_limited``).
"""

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3


def limit_heap_growth(threshold: int = 131072) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False


def release_freed() -> bool:
    """Return freed heap memory to the OS now (glibc ``malloc_trim``), e.g. after the per-batch embeddings of
    a fit were copied into one tensor and freed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


class heap_limited:
    """``with heap_limited():`` large allocations are mmapped (returned on free) inside the block; afterwards
    glibc's heap serves them again (``tune_malloc_for_inference``)."""

    def __enter__(self):
        release_freed()
        limit_heap_growth()
        return self

    def __exit__(self, *exc):
        tune_malloc_for_inference()
        return False


def tune_malloc_for_inference(mmap_threshold: int = 32 << 20) -> bool:
    """Let glibc keep large blocks in its heap again, for a process that scores images and trains nothing.

    ``MALLOC_MMAP_THRESHOLD_=131072`` (core.runtime, the Makefile, TRAINING_ENV) is right for PatchCore's
    coreset step, but it makes every tensor over 128 KB a fresh ``mmap`` — zeroed pages faulted in on every
    inference: end-to-end latency doubled here (PyTorch 41 → 85 ms, OpenVINO 31 → 66 ms per grid image).
    This sets glibc's own ceiling for its dynamic threshold (32 MB) and a trim threshold of twice that.
    Call it once, before models are loaded, in processes that never train in-process (the dashboard,
    benchmarks/speed.py); never in a process that may run a coreset selection afterwards."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, int(mmap_threshold)) and libc.mallopt(-1, 2 * int(mmap_threshold)))
    except (OSError, AttributeError):  # not glibc
        return False


def set_threads(n: int | None = None) -> int:
    """Use every core unless told otherwise (torch's default can be lower inside some launchers)."""
    import torch  # here, not at the top: the dashboard imports this module before any model is needed

    n = n or int(os.environ.get("AW_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


class threads:
    """``with threads(n):`` torch runs on ``n`` threads inside the block (None: unchanged), then as before."""

    def __init__(self, n: int | None) -> None:
        self.n, self.before = n, None

    def __enter__(self):
        if self.n:
            import torch

            self.before = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.before:
            import torch

            torch.set_num_threads(self.before)
        return False


def fastest_threads(step, repeats: int = 2) -> int:
    """The thread count (1 or all of torch's) at which ``step()`` runs faster, each timed after a warm-up call.

    One image through a small network is many short operations; with OpenMP threads that sleep while they wait
    (OMP_WAIT_POLICY=PASSIVE, set for a shared machine) each operation on two threads first wakes the second one,
    which can cost more than the work it shares: on 2 cores EfficientNet-Lite0 at 256², batch 1, took 34-36 ms on
    two threads and ~17 ms on one (11-12 ms with spinning threads, which collapse when another process needs the
    CPU). Large products (PatchCore's nearest-neighbour search at 512 px) still gain from both threads, so the
    choice is measured per model, not assumed. ``AW_THREADS`` set by the user: that, unmeasured."""
    import time

    import torch

    every = torch.get_num_threads()
    if os.environ.get("AW_THREADS") or every <= 1:
        return every
    best = (float("inf"), every)
    for n in (every, 1):
        with threads(n):
            step()
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                best = min(best, (time.perf_counter() - start, n))
    return best[1]
