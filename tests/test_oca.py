"""The OCA module (paper Eqs. 1-3) against a reference written with explicit loops."""
from __future__ import annotations

import math

import pytest
import torch

from mtloca_lib.models.oca import ObjectContextualAttention, PixelRegionAttention, RegionGather

B, C, D, H, W, K = 2, 6, 4, 3, 5, 2




def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial weights everywhere (GroupNorm affine included), float64."""
    g = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.7)


def reference_regions(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Eq. 1 by loops: f_k = sum_i [exp(m_ki) / sum_j exp(m_kj)] x_i. x (B,C,H,W), m (B,K,H,W)."""
    b_, c_, h_, w_ = x.shape
    pixels = [(r, s) for r in range(h_) for s in range(w_)]
    out = torch.zeros(b_, m.shape[1], c_, dtype=x.dtype)
    for b in range(b_):
        for k in range(m.shape[1]):
            denom = sum(math.exp(m[b, k, r, s].item()) for r, s in pixels)
            for r, s in pixels:
                out[b, k] += math.exp(m[b, k, r, s].item()) / denom * x[b, :, r, s]
    return out


def reference_context(att: PixelRegionAttention, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Eqs. 2-3 by loops over pixels and regions.

    phi and rho are the module's pixel transforms (GroupNorm makes them act on a
    whole map); psi and delta are applied to one region vector at a time.
    """
    b_, c_, h_, w_ = x.shape
    d = att.key_channels
    query = att.query_proj(x)                                   # phi(x), (B, d, H, W)
    summed = torch.zeros(b_, d, h_, w_, dtype=x.dtype)
    for b in range(b_):
        keys = [att.key_proj(f[b, k]) for k in range(f.shape[1])]      # psi(f_k)
        values = [att.value_proj(f[b, k]) for k in range(f.shape[1])]  # delta(f_k)
        for r in range(h_):
            for s in range(w_):
                scores = [float(query[b, :, r, s] @ key) / math.sqrt(d) for key in keys]
                exps = [math.exp(v) for v in scores]
                weights = [e / sum(exps) for e in exps]               # softmax over k
                for wk, value in zip(weights, values):
                    summed[b, :, r, s] += wk * value
    return att.out_proj(summed)                                   # rho(...)


def test_region_gather_matches_loops():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    m = torch.randn(B, K, H, W, generator=g, dtype=torch.float64) * 2
    got = RegionGather()(x, m)
    assert got.shape == (B, K, C)
    torch.testing.assert_close(got, reference_regions(x, m), rtol=0, atol=1e-10)


def test_relation_is_softmax_over_regions_with_sqrt_d_scale():
    att = PixelRegionAttention(C, D, gn_groups=2)
    _randomise(att)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    f = torch.randn(B, K, C, generator=g, dtype=torch.float64)
    rel = att.relation(x, f)
    assert rel.shape == (B, H * W, K)
    torch.testing.assert_close(rel.sum(dim=2), torch.ones(B, H * W, dtype=torch.float64))
    q = att.query_proj(x)[0, :, 1, 2]
    scores = torch.stack([q @ att.key_proj(f[0, k]) for k in range(K)]) / math.sqrt(D)
    torch.testing.assert_close(rel[0, 1 * W + 2], torch.softmax(scores, 0), rtol=0, atol=1e-12)


def test_pixel_region_attention_matches_loops():
    att = PixelRegionAttention(C, D, gn_groups=2)
    _randomise(att, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    f = torch.randn(B, K, C, generator=g, dtype=torch.float64)
    with torch.no_grad():
        got = att(x, f)
        ref = reference_context(att, x, f)
    assert got.shape == (B, C, H, W)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("key_channels", [None, D])
def test_oca_module_matches_loops(key_channels):
    oca = ObjectContextualAttention(C, key_channels=key_channels, gn_groups=3)
    _randomise(oca, seed=5)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    with torch.no_grad():
        soft, seg = oca(x)
        # reference: soft regions (1x1 conv = per-pixel affine map), Eqs. 1-3, concat, fuse, conv
        soft_ref = torch.zeros(B, K, H, W, dtype=torch.float64)
        wgt, bias = oca.region_head.weight[:, :, 0, 0], oca.region_head.bias
        for b in range(B):
            for r in range(H):
                for s in range(W):
                    soft_ref[b, :, r, s] = wgt @ x[b, :, r, s] + bias
        f = reference_regions(x, soft_ref)
        y = reference_context(oca.attention, x, f)
        seg_ref = oca.seg_conv(oca.fuse(torch.cat([y, x], dim=1)))
    assert soft.shape == (B, K, H, W) and seg.shape == (B, 2, H, W)
    torch.testing.assert_close(soft, soft_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(seg, seg_ref, rtol=0, atol=1e-10)


def test_oca_uses_the_context():
    """The final mask must depend on the soft regions through Eqs. 1-3, not only on x."""
    oca = ObjectContextualAttention(C, gn_groups=3)
    _randomise(oca, seed=7)
    x = torch.randn(1, C, H, W, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    with torch.no_grad():
        _, seg = oca(x)
        oca.region_head.bias[0] += 3.0  # shift one region's logits: changes nothing in Eq. 1
        _, seg_shift = oca(x)
        oca.region_head.weight[0] *= -1  # new soft regions: new context, new mask
        _, seg_new = oca(x)
    torch.testing.assert_close(seg_shift, seg, rtol=0, atol=1e-10)
    assert (seg_new - seg).abs().max() > 1e-6
