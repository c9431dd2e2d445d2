"""Channels-last training on a CPU: a GroupNorm whose backward avoids PyTorch's slow path.

On a CPU, PyTorch's GroupNorm *backward* is many times slower on channels-last (NHWC)
tensors than on standard (NCHW) ones, worst in bf16 (a (16, 16, 128, 128) bf16 GroupNorm
backward: 79 ms channels-last against 5.7 ms NCHW; docs/benchmarks.md), while its forward
is fast there from 16 channels up. :class:`ChannelsLastGroupNorm` runs the forward on the
input as it comes (on an NCHW copy below :data:`MIN_CHANNELS_LAST_FORWARD` channels) and
the backward on NCHW copies of the gradient and the input, handing the input gradient
back channels-last for the next convolution.

The arithmetic is PyTorch's own: ``aten.native_group_norm`` forward and
``aten.native_group_norm_backward`` with the saved mean and inverse standard deviation,
so in float64 the results equal ``nn.GroupNorm`` to round-off
(``tests/test_channels_last.py``). We write this by hand because PyTorch has no option to
pick the layout of the GroupNorm backward.

The engine's earlier method wrapped every GroupNorm in layout copies (two in the forward,
two in the backward); this one needs three per wide GroupNorm and is simpler (one
autograd function, no hooks). Measured against it in one process on the 2-core CPU
(``benchmarks/bench_groupnorm_layout.py``, docs/benchmarks.md): the same speed within
noise (training step -3 % to +4 % across models and thread counts).

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import torch
from torch import nn

#: Below this many channels PyTorch's channels-last GroupNorm forward is also slow on a
#: CPU (bf16, (16, C, 128, 128): 4.5 ms channels-last against 0.5 ms NCHW for C = 4 or 8,
#: 1.2 against 0.9 ms for C = 16, i.e. roughly equal counting the copies), so narrower
#: inputs are normalised on an NCHW copy, as the backward always is.
MIN_CHANNELS_LAST_FORWARD = 16


class _GroupNormChannelsLastFn(torch.autograd.Function):
    """GroupNorm: native forward on the given layout (NCHW copy when narrow), backward on NCHW copies."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups: int, eps: float):
        n, c = x.shape[:2]
        hw = x.numel() // (n * c)
        # narrow tensors: the channels-last forward kernel is slow there, normalise an NCHW copy
        source = x if c >= MIN_CHANNELS_LAST_FORWARD else x.contiguous()
        y, mean, rstd = torch.ops.aten.native_group_norm(source, weight, bias, n, c, hw, groups, eps)
        ctx.save_for_backward(source, weight, mean, rstd)
        ctx.groups = groups
        return y.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, rstd = ctx.saved_tensors  # x: the forward's input, or its NCHW copy
        n, c = x.shape[:2]
        hw = x.numel() // (n * c)
        want = [bool(flag) for flag in ctx.needs_input_grad[:3]]
        dx, dw, db = torch.ops.aten.native_group_norm_backward(
            grad_out.contiguous(), x.contiguous(), mean, rstd, weight, n, c, hw, ctx.groups, want)
        if dx is not None:
            dx = dx.contiguous(memory_format=torch.channels_last)
        return dx, dw, db, None, None


class ChannelsLastGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` with a fast backward for channels-last 4-D inputs on a CPU.

    Same parameters, buffers and ``state_dict`` keys as ``nn.GroupNorm``; every other
    input (NCHW, 2-D or 3-D, CUDA) goes through ``nn.GroupNorm.forward`` unchanged.

    Shapes:
        (B, C, H, W) -> (B, C, H, W), channels-last in, channels-last out.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return _GroupNormChannelsLastFn.apply(x, self.weight, self.bias, self.num_groups, self.eps)
        return super().forward(x)


def prepare_memory_format(model: nn.Module, channels_last: bool, device: torch.device) -> nn.Module:
    """Convert ``model`` to channels-last (in place) when asked; returns the model.

    On a CPU every ``nn.GroupNorm`` becomes a :class:`ChannelsLastGroupNorm` (its class
    is swapped in place: parameters, ``state_dict`` and hooks are untouched).
    """
    if not channels_last:
        return model
    model = model.to(memory_format=torch.channels_last)
    if device.type == "cpu":
        for mod in model.modules():
            if type(mod) is nn.GroupNorm:
                mod.__class__ = ChannelsLastGroupNorm
    return model
