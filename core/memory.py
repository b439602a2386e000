"""Keep glibc from hoarding freed memory during PatchCore's coreset step.

Seen here: without this, each coreset iteration of anomalib's sampler left ~16 MB in malloc's heap and a fit
was OOM-killed at 24 GB. Serving large allocations with mmap returns them to the OS on free. Child processes
start with the same setting through ``MALLOC_MMAP_THRESHOLD_`` (core.config.TRAINING_ENV); this covers a
process that is already running, such as a foreground ``aw train``.

The setting makes every tensor over 128 KB a fresh, page-faulted mmap, which halves the speed of feature
extraction and inference; so a run uses ``core.inference.tune_malloc_for_inference`` for those and PatchCore
switches to this setting only around its coreset step (``heap_limited``).
"""

import ctypes
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
        from core.inference import tune_malloc_for_inference

        tune_malloc_for_inference()
        return False
