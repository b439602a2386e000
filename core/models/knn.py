"""Nearest memory-bank rows for many patch embeddings, in cache-sized tiles (PatchCore's scoring search).

anomalib's ``PatchcoreModel.nearest_neighbors(n_neighbors=1)`` arithmetic on tiles: here, in the models layer,
because both scoring (``core.engine.inference``) and PatchCore's fit (its training images' own anomaly maps, for the
similarity vectors) need it.

Example::

    dist, idx = nearest_patch(embedding, memory_bank)  # (N, D), (M, D) -> (N,), (N,)
"""

from __future__ import annotations

import torch


def nearest_in_bank_blocks(
    rows: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor, block: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """``nearest_patch`` for one tile of rows: a running minimum over blocks of the memory bank. Has no loop
    over the rows, so it also traces into an exported graph for any batch size (core.engine.export)."""
    x_sq = rows.pow(2).sum(dim=-1, keepdim=True)
    best_d = best_i = None
    for start in range(0, bank.shape[0], block):
        dist = torch.matmul(rows, bank[start : start + block].transpose(-2, -1))
        dist.mul_(-2).add_(x_sq).add_(bank_sq[start : start + block]).clamp_min_(0).sqrt_()
        d, i = dist.min(1)
        if best_d is None:
            best_d, best_i = d, i
        else:
            better = d < best_d
            best_d = torch.where(better, d, best_d)
            best_i = torch.where(better, i + start, best_i)
    return best_d, best_i


def nearest_patch(
    embedding: torch.Tensor,
    bank: torch.Tensor,
    bank_sq: torch.Tensor | None = None,
    block: int = 2048,
    row_block: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to, and index of, the nearest memory-bank row for every embedding row.

    anomalib's ``PatchcoreModel.nearest_neighbors(n_neighbors=1)`` arithmetic — ``sqrt(clamp(-2·x·yᵀ + |x|² +
    |y|²))`` then the minimum — computed on tiles of at most ``row_block`` embeddings × ``block`` memory-bank
    rows (8 MB), which stay in cache, with a running minimum (earlier tiles win ties, as ``min`` returns the
    first index). anomalib materialises 1,024 × the whole bank at once (110 MB for a 10 % grid coreset)."""
    if bank_sq is None:
        bank_sq = bank.pow(2).sum(dim=-1)
    dists, indices = [], []
    for r in range(0, embedding.shape[0], row_block):
        d, i = nearest_in_bank_blocks(embedding[r : r + row_block], bank, bank_sq, block)
        dists.append(d)
        indices.append(i)
    return (dists[0], indices[0]) if len(dists) == 1 else (torch.cat(dists), torch.cat(indices))
