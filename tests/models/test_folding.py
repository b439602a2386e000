"""BatchNorm folded into convolutions for inference (core.models.folding): the same features, the checkpoint
untouched. That the folded inference path still scores like stock anomalib: tests/engine/test_inference.py."""

from __future__ import annotations

import torch

from core.models.folding import fold_batchnorm


def test_folding_batchnorm_keeps_the_features_and_the_checkpoint_of_a_timm_backbone():
    import timm

    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2, 3))
    for module in net.modules():  # trained-looking statistics, so that folding has something to fold
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected = net(x)

    assert fold_batchnorm(net) > 30

    with torch.no_grad():
        got = net(x)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
