"""TensorFlow's "same" padding without a padded copy of the feature map, for inference.

timm's ``tf_`` EfficientNets pad like TensorFlow: a stride-2 convolution on an even-sized map pads one more row and
column at the bottom and right than at the top and left, which torch's symmetric ``padding`` cannot say, so timm's
``Conv2dSame`` copies every such input into a freshly zeroed, larger tensor before convolving (``F.pad``). On a
2-core CPU that copy cost more than the convolution it feeds (EfficientNet-Lite0's 96×128×128 map: 0.25 ms of
padding before a 0.28-ms convolution, and page faults when the allocator hands out fresh memory).

The same result without the copy: a convolution whose pad is (a, b) with b > a equals one with symmetric padding b
and the kernel extended by b − a zero taps at its top/left, because the extra leading positions meet only the zero
taps. The output size is TensorFlow's. The padding depends on the input size, so the extended kernel is made per
input size on first use and kept.

    >>> import timm
    >>> net = timm.create_model("tf_efficientnet_lite0", features_only=True).eval()
    >>> static_same_padding(net)  # Conv2dSame layers changed
    5
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def static_same_padding(net: torch.nn.Module) -> int:
    """Run every timm ``Conv2dSame`` of ``net`` (dilation 1) without padding its input, in place; the same values.

    Call after ``core.models.folding.fold_batchnorm``: a folded convolution runs a copy holding the folded weights,
    and that copy is the one changed here. Returns the number of convolutions changed."""
    from timm.layers.conv2d_same import Conv2dSame  # timm is pinned (requirements.txt)

    changed = 0
    for module in net.modules():
        if not isinstance(module, Conv2dSame) or tuple(module.dilation) != (1, 1):
            continue
        # the module's own forward, or the folded copy's (fold_batchnorm binds the copy's forward to it)
        runs = getattr(module.forward, "__self__", module)
        if not isinstance(runs, Conv2dSame):
            continue
        module.forward = _ExtendedKernel(runs).forward
        changed += 1
    return changed


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2  # TensorFlow: the odd one at the end


class _ExtendedKernel:
    """A ``Conv2dSame``'s forward as one convolution with symmetric padding (not a module: the network's state dict
    stays as it is)."""

    def __init__(self, conv: torch.nn.Module) -> None:
        self.conv = conv
        self.by_size: dict[tuple[int, int], tuple[torch.Tensor, tuple[int, int]]] = {}

    def _kernel(self, height: int, width: int) -> tuple[torch.Tensor, tuple[int, int]]:
        import torch.nn.functional as F

        kh, kw = self.conv.weight.shape[-2:]
        top, bottom = _same_pads(height, kh, self.conv.stride[0])
        left, right = _same_pads(width, kw, self.conv.stride[1])
        weight = F.pad(self.conv.weight.detach(), (right - left, 0, bottom - top, 0))
        return weight.contiguous(memory_format=_format_of(self.conv.weight)), (bottom, right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        size = (x.shape[-2], x.shape[-1])
        if size not in self.by_size:
            self.by_size[size] = self._kernel(*size)
        weight, padding = self.by_size[size]
        conv = self.conv
        return F.conv2d(x, weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)


def _format_of(tensor: torch.Tensor):
    import torch

    return torch.channels_last if tensor.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
