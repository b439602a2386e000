"""Where a PatchCore memory-bank entry came from: which training image, which patch.

The coreset step (``core.models.coreset.select_coreset_indices``) gives the indices of the picked rows of the
embedding store, whose patch k is patch k mod (h·w) of training image k // (h·w) (row-major): 12 bytes an entry.

    >>> import numpy as np
    >>> prov = provenance_of(np.array([0, 5, 17]), (4, 4), ["a.png", "b.png"])
    >>> prov.entries.tolist()
    [[0, 0, 0], [0, 1, 1], [1, 0, 1]]
"""

from __future__ import annotations

import numpy as np

from core.store.artifacts import BankProvenance


def provenance_of(indices: np.ndarray, grid: tuple[int, int], train_paths: list[str]) -> BankProvenance:
    """Provenance rows for embedding-store ``indices`` (patch k of the store = image k // (h·w), row-major)."""
    h, w = grid
    per_image = h * w
    image, pos = np.divmod(np.asarray(indices, dtype=np.int64), per_image)
    if len(image) and image.max() >= len(train_paths):
        raise ValueError("more patches than training images × grid: the grid or the path list is wrong")
    entries = np.stack([image, pos // w, pos % w], axis=1).astype(np.int32)
    return BankProvenance(entries, list(train_paths), (int(h), int(w)))
