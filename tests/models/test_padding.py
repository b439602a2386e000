"""TensorFlow "same" padding without a padded copy (core.models.padding): the same features as timm's Conv2dSame,
whatever the input size, alone and after BatchNorm folding; the checkpoint untouched."""

from __future__ import annotations

import pytest
import torch

from core.models.folding import fold_batchnorm
from core.models.padding import static_same_padding


def _lite0():
    import timm

    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2, 3))


@pytest.mark.parametrize("size", [(128, 128), (97, 130)])  # even (pads 0/1) and odd/mixed sides
def test_a_timm_backbone_without_padded_copies_gives_the_same_features(size):
    net = _lite0().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = net(x)

    assert static_same_padding(net) == 5  # the stem and four stride-2 depthwise convolutions

    with torch.no_grad():
        got = net(x)
        again = net(x)  # the kernel kept for this size
    for a, b, c in zip(got, expected, again, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())
        assert torch.equal(a, c)
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_after_folding_the_padding_runs_the_folded_weights():
    net = _lite0()
    for module in net.modules():  # trained-looking statistics, so that folding changes the weights
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    net.eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = net(x)

    fold_batchnorm(net)
    assert static_same_padding(net) == 5

    with torch.no_grad():
        got = net(x)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())
