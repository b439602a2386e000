"""Where a PatchCore memory-bank entry came from: which training image, which patch.

The coreset step (``core.models.coreset.select_coreset``) returns the selected rows, not their indices. The bank rows
are bit-exact copies of rows of the embedding store, so their indices are recovered exactly by matching rows:
an integer hash of the bits of 16 of each row's columns (chunked integer work), a sort, a full comparison of each
match. Identical rows (a perfectly flat image) resolve to the first one, which is as
valid an origin as any.

    >>> import torch
    >>> emb = torch.randn(100, 8)
    >>> idx = rows_to_indices(emb[[5, 42, 7]], emb)
    >>> idx.tolist()
    [5, 42, 7]
"""

from __future__ import annotations

import numpy as np

from core.store.artifacts import BankProvenance

_CHUNK_ROWS = 65536


_HASH_COLUMNS = 16  # a hash of a few columns' bits; rows that share it are told apart by the full comparison


def _row_hashes(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    step = max(1, rows.shape[1] // _HASH_COLUMNS)
    bits = rows.view(np.int32)[:, ::step]
    out = np.empty(bits.shape[0], dtype=np.int64)
    for start in range(0, bits.shape[0], _CHUNK_ROWS):
        # int64 products wrap on overflow: a deterministic hash of the exact bits.
        out[start : start + _CHUNK_ROWS] = (bits[start : start + _CHUNK_ROWS].astype(np.int64) * weights).sum(axis=1)
    return out


def rows_to_indices(rows, embedding) -> np.ndarray:
    """For each row of ``rows`` (a subset of ``embedding``'s rows, float32), its index in ``embedding``."""
    sub = np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
    full = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32))
    n_cols = len(range(0, full.shape[1], max(1, full.shape[1] // _HASH_COLUMNS)))
    weights = np.random.default_rng(0).integers(1, 2**62, size=n_cols, dtype=np.int64) | 1
    h_full, h_sub = _row_hashes(full, weights), _row_hashes(sub, weights)
    order = np.argsort(h_full, kind="stable")
    sorted_h = h_full[order]
    pos = np.searchsorted(sorted_h, h_sub)
    out = order[np.minimum(pos, len(order) - 1)]
    first_ok = (full[out].view(np.int32) == sub.view(np.int32)).all(axis=1)  # usually the first candidate matches
    for i in np.flatnonzero(~first_ok):  # hash collisions walk on
        p = pos[i]
        while p < len(sorted_h) and sorted_h[p] == h_sub[i]:
            if np.array_equal(full[order[p]].view(np.int32), sub[i].view(np.int32)):
                out[i] = order[p]
                break
            p += 1
        else:
            raise ValueError(f"memory-bank row {i} is not a row of the embedding")
    return out


def provenance_of(indices: np.ndarray, grid: tuple[int, int], train_paths: list[str]) -> BankProvenance:
    """Provenance rows for embedding-store ``indices`` (patch k of the store = image k // (h·w), row-major)."""
    h, w = grid
    per_image = h * w
    image, pos = np.divmod(np.asarray(indices, dtype=np.int64), per_image)
    if len(image) and image.max() >= len(train_paths):
        raise ValueError("more patches than training images × grid: the grid or the path list is wrong")
    entries = np.stack([image, pos // w, pos % w], axis=1).astype(np.int32)
    return BankProvenance(entries, list(train_paths), (int(h), int(w)))
