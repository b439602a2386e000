"""Keep glibc from hoarding freed memory during PatchCore's coreset step.

Seen here: without this, each coreset iteration left ~16 MB in malloc's heap and a fit was OOM-killed at
24 GB. Serving large allocations with mmap returns them to the OS on free. Child processes get the same
setting through ``MALLOC_MMAP_THRESHOLD_`` (core.config.TRAINING_ENV); this covers a process that is
already running, such as a foreground ``python -m core train``.
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
