"""PatchCore's nearest-neighbour search in tiles: the same distances and indices as anomalib's."""

from __future__ import annotations

import torch

from core.models.knn import nearest_patch


def test_blocked_nearest_neighbour_is_anomalib():
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    gen = torch.Generator().manual_seed(0)
    emb, bank = torch.randn(300, 24, generator=gen), torch.randn(1000, 24, generator=gen)
    ref_d, ref_i = PatchcoreModel.euclidean_dist(emb, bank).min(1)
    d, i = nearest_patch(emb, bank, block=128, row_block=128)  # 8 × 3 tiles, the last ones partial
    assert torch.equal(i, ref_i)
    assert torch.allclose(d, ref_d, rtol=1e-6, atol=0)
