"""The channels-last fast path changes the layout, not the arithmetic (mtloca_lib.training.channels_last)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtloca_lib.config.run_config import make_config
from mtloca_lib.training.channels_last import (
    MIN_CHANNELS_LAST_FORWARD,
    ChannelsLastGroupNorm,
    _GroupNormChannelsLastFn,
    prepare_memory_format,
)
from mtloca_lib.training.loop import build_for_run

CL = torch.channels_last


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=CL)


@pytest.mark.parametrize("channels", [6, MIN_CHANNELS_LAST_FORWARD])  # NCHW-copy and native forward
def test_groupnorm_function_gradients_are_exact(channels):
    """gradcheck in float64 against finite differences, input, weight and bias."""
    g = torch.Generator().manual_seed(0)
    x = _cl(torch.randn(2, channels, 4, 5, generator=g, dtype=torch.float64)).requires_grad_()
    w = torch.randn(channels, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(channels, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: _GroupNormChannelsLastFn.apply(x, w, b, 2, 1e-5), (x, w, b))


@pytest.mark.parametrize("channels", [8, 2 * MIN_CHANNELS_LAST_FORWARD])
def test_groupnorm_module_matches_nn_groupnorm_and_keeps_layout(channels):
    g = torch.Generator().manual_seed(1)
    ref = nn.GroupNorm(4, channels).double()
    with torch.no_grad():
        ref.weight.copy_(torch.randn(channels, generator=g))
        ref.bias.copy_(torch.randn(channels, generator=g))
    fast = copy.deepcopy(ref)
    fast.__class__ = ChannelsLastGroupNorm
    x = torch.randn(3, channels, 7, 6, generator=g, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), _cl(x).requires_grad_()
    ya, yb = ref(xa), fast(xb)
    assert yb.is_contiguous(memory_format=CL) and not yb.is_contiguous()
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    dy = torch.randn(ya.shape, generator=g, dtype=torch.float64)
    ya.backward(dy), yb.backward(_cl(dy))
    assert xb.grad.is_contiguous(memory_format=CL)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ref.weight.grad, fast.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ref.bias.grad, fast.bias.grad, rtol=1e-12, atol=1e-12)
    # anything not channels-last 4-D goes through nn.GroupNorm itself
    torch.testing.assert_close(fast(x), ref(x))


def test_groupnorm_bf16_autocast_error_is_that_of_nn_groupnorm():
    """Under bf16 autocast (the CPU fast path), the error against float64 is bf16's, no more."""
    g = torch.Generator().manual_seed(2)
    ref = nn.GroupNorm(8, 16)
    fast = copy.deepcopy(ref)
    fast.__class__ = ChannelsLastGroupNorm
    x = torch.randn(4, 16, 32, 32, generator=g) * 3 + 1
    dy = torch.randn(x.shape, generator=g)
    x64 = x.double().requires_grad_()
    y64 = F.group_norm(x64, 8, ref.weight.double(), ref.bias.double(), ref.eps)
    y64.backward(dy.double())

    def rel_err(module, layout):
        xi = layout(x.bfloat16()).requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(xi)
        y.backward(layout(dy.bfloat16()))
        return (float((y.detach().double() - y64.detach()).abs().max() / y64.detach().abs().max()),
                float((xi.grad.double() - x64.grad).abs().max() / x64.grad.abs().max()))

    err_ref = rel_err(ref, lambda t: t.contiguous())
    err_fast = rel_err(fast, _cl)
    for e_ref, e_fast in zip(err_ref, err_fast):
        assert e_fast < 2e-2
        assert e_fast <= 2 * e_ref + 1e-3


def test_prepare_memory_format_keeps_results_of_the_whole_model():
    """MTL-OCA channels-last (with the GroupNorm swap) = NCHW, outputs and gradients, in float64.

    Checked in float64, where only round-off remains (in float32 the OCA's softmax over
    pixels amplifies the different summation order of channels-last kernels to ~1e-4).
    """
    cfg = make_config("mtl_oca", "smoke", {"size": 32})
    torch.manual_seed(0)
    ref = build_for_run(cfg, 3).double()
    fast = build_for_run(cfg, 3).double()
    fast.load_state_dict(ref.state_dict())
    fast = prepare_memory_format(fast, True, torch.device("cpu"))
    assert set(fast.state_dict()) == set(ref.state_dict())
    norms = [m for m in fast.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(type(m) is ChannelsLastGroupNorm for m in norms)
    assert prepare_memory_format(fast, True, torch.device("cpu")) is fast  # idempotent
    ref.eval(), fast.eval()
    x = torch.rand(2, 2, 32, 32, dtype=torch.float64)
    a, b = ref(x), fast(_cl(x))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-10, atol=1e-10)
    (a["seg"].sum() + a["cls"].sum()).backward()
    (b["seg"].sum() + b["cls"].sum()).backward()
    ga = torch.cat([p.grad.flatten() for p in ref.parameters() if p.grad is not None])
    gb = torch.cat([p.grad.flatten() for p in fast.parameters() if p.grad is not None])
    assert ga.shape == gb.shape
    assert float((ga - gb).norm() / ga.norm()) < 1e-10


def test_prepare_memory_format_off_leaves_the_model_alone():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4))
    assert prepare_memory_format(model, False, torch.device("cpu")) is model
    assert type(model[1]) is nn.GroupNorm
