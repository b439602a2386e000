"""The two similarity vectors of an image, pooled from its patch features and its anomaly map."""

from __future__ import annotations

import numpy as np
import torch

from core.models.pooling import pool, pool_unscored, pyramid


def _texture_with_a_spot(direction: torch.Tensor) -> torch.Tensor:
    """(1, D, 8, 8) features: every patch alike, one patch pointing ``direction`` away from the rest."""
    feats = torch.ones(1, direction.numel(), 8, 8)
    feats[0, :, 2, 5] += 3 * direction
    return feats


def test_the_defect_vector_points_at_the_anomalous_patch_not_at_the_texture():
    direction = torch.zeros(16)
    direction[3] = 1.0
    feats = _texture_with_a_spot(direction)
    anomaly_map = np.zeros((1, 64, 64), np.float32)
    anomaly_map[0, 16:24, 40:48] = 5.0  # the spot's patch, at 8x the feature resolution

    g, d = pool(feats, anomaly_map)

    assert g.shape == d.shape == (1, 16)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, rtol=1e-6)
    assert int(np.argmax(d[0])) == 3  # the spot's own direction, relative to the image's mean patch
    assert d[0, 3] > 0.99


def test_an_unscored_image_weights_its_most_atypical_patch_like_a_map_would():
    direction = torch.zeros(16)
    direction[7] = 1.0
    feats = _texture_with_a_spot(direction)

    g, d = pool_unscored(feats)

    g_map, d_map = pool(feats, (feats - feats.mean((2, 3), keepdim=True)).norm(dim=1))
    np.testing.assert_allclose(g, g_map)
    np.testing.assert_allclose(d, d_map)
    assert int(np.argmax(d[0])) == 7


def test_a_perfectly_uniform_image_still_gets_unit_vectors():
    g, d = pool_unscored(torch.ones(2, 4, 5, 5))

    assert np.isfinite(d).all()
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-6)


def test_stages_of_different_strides_are_resized_to_the_finest_and_stacked():
    out = pyramid({"fine": torch.zeros(1, 3, 16, 16), "coarse": torch.ones(1, 5, 8, 8)})

    assert out.shape == (1, 8, 16, 16)
    assert torch.all(out[:, 3:] == 1)
