"""Object contextual attention (OCA): the paper's Eqs. 1-3.

This is the object-contextual representation of OCRNet (Yuan, Chen & Wang,
ECCV 2020), written for K = 2 soft object regions (background, lesion) on the
full-resolution Res-UNet features. Notation (pixels i, regions k):

- soft object regions ``m_k`` (:attr:`ObjectContextualAttention.region_head`, a 1x1
  conv): K maps, supervised by the mask (the "unenhanced" coarse segmentation);
- Eq. 1 (:class:`RegionGather`): ``f_k = sum_i softmax_i(m_k)_i x_i``;
- Eq. 2 (:class:`PixelRegionAttention`): ``w_ik = softmax_k(phi(x_i)^T psi(f_k) / sqrt(d))``;
- Eq. 3 (:class:`PixelRegionAttention`): ``y_i = rho(sum_k w_ik delta(f_k))``;
- augmented representation ``z_i = g([y_i, x_i])`` (``fuse``) and a 1x1 conv to the
  final 2-class mask (``seg_conv``).

phi and rho act on pixels (1x1 conv + GroupNorm + ReLU); psi and delta act on
the K region vectors (Linear + ReLU: there is no spatial extent to normalise over).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mtloca_lib.models.blocks import ConvGNAct


class RegionGather(nn.Module):
    """Eq. 1: object region representations from pixel features and soft regions.

    Each soft region's logits are normalised by a softmax over all pixels, and the
    region representation is the resulting weighted sum of pixel features. No
    parameters.

    Args (forward):
        features: pixel representations X, (B, C, H, W).
        region_logits: soft object regions (logits), (B, K, H, W).

    Returns:
        regions: (B, K, C), ``regions[b, k] = f_k``.
    """

    def forward(self, features: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
        pixel_weights = torch.softmax(region_logits.flatten(2), dim=2)  # (B, K, N)
        pixels = features.flatten(2).transpose(1, 2)                   # (B, N, C)
        return torch.bmm(pixel_weights, pixels)                        # (B, K, C)


class PixelRegionAttention(nn.Module):
    """Eqs. 2-3: pixel-region relation and the contextual representation.

    Args:
        channels: C, width of the pixel features X and of the output.
        key_channels: d, width of the query/key/value space (the 1/sqrt(d) scale).
        gn_groups: maximum number of GroupNorm groups for the pixel transforms.

    Submodules:
        query_proj (phi): pixels, two 1x1 ConvGNAct, C -> d.
        key_proj (psi): regions, two Linear + ReLU, C -> d.
        value_proj (delta): regions, Linear + ReLU, C -> d.
        out_proj (rho): pixels, 1x1 ConvGNAct, d -> C.

    Args (forward):
        features: X, (B, C, H, W).
        regions: f, (B, K, C) from :class:`RegionGather`.

    Returns:
        context: y, (B, C, H, W).
    """

    def __init__(self, channels: int, key_channels: int, gn_groups: int = 8):
        super().__init__()
        self.key_channels = key_channels
        self.query_proj = nn.Sequential(
            ConvGNAct(channels, key_channels, 1, gn_groups),
            ConvGNAct(key_channels, key_channels, 1, gn_groups),
        )
        self.key_proj = nn.Sequential(
            nn.Linear(channels, key_channels), nn.ReLU(inplace=True),
            nn.Linear(key_channels, key_channels), nn.ReLU(inplace=True),
        )
        self.value_proj = nn.Sequential(nn.Linear(channels, key_channels), nn.ReLU(inplace=True))
        self.out_proj = ConvGNAct(key_channels, channels, 1, gn_groups)

    def relation(self, features: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Eq. 2: w, (B, N, K) with N = H*W; each row sums to 1 over regions."""
        query = self.query_proj(features).flatten(2).transpose(1, 2)  # (B, N, d)
        key = self.key_proj(regions)                                   # (B, K, d)
        logits = torch.bmm(query, key.transpose(1, 2)) / math.sqrt(self.key_channels)
        return torch.softmax(logits, dim=2)                            # (B, N, K)

    def forward(self, features: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        relation = self.relation(features, regions)                    # (B, N, K)
        value = self.value_proj(regions)                               # (B, K, d)
        context = torch.bmm(relation, value)                           # (B, N, d)
        context = context.transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.out_proj(context)                                  # (B, C, H, W)


class ObjectContextualAttention(nn.Module):
    """The OCA segmentation head: soft regions, Eqs. 1-3, augmentation, final mask.

    Args:
        channels: C, width of the backbone features X.
        key_channels: d of Eq. 2 (default: C).
        n_regions: K soft object regions (2: background, lesion; they are
            supervised by the mask, so K equals ``n_classes``).
        n_classes: classes of the final mask (2).
        gn_groups: maximum number of GroupNorm groups.

    Submodules (names used by Grad-CAM and the gradient tests):
        region_head: 1x1 conv, X -> soft region logits.
        gather: Eq. 1.  attention: Eqs. 2-3.
        fuse: 1x1 ConvGNAct on concat(y, X), 2C -> C (the augmented representation).
        seg_conv: 1x1 conv, C -> n_classes (the final, "enhanced" mask logits).

    Shapes:
        features (B, C, H, W) ->
        (region_logits (B, K, H, W), seg_logits (B, n_classes, H, W))
    """

    def __init__(self, channels: int, key_channels: int | None = None, n_regions: int = 2,
                 n_classes: int = 2, gn_groups: int = 8):
        super().__init__()
        key_channels = key_channels or channels
        self.region_head = nn.Conv2d(channels, n_regions, 1)
        self.gather = RegionGather()
        self.attention = PixelRegionAttention(channels, key_channels, gn_groups)
        self.fuse = ConvGNAct(2 * channels, channels, 1, gn_groups)
        self.seg_conv = nn.Conv2d(channels, n_classes, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        region_logits = self.region_head(features)               # (B, K, H, W)
        regions = self.gather(features, region_logits)           # (B, K, C)
        context = self.attention(features, regions)              # (B, C, H, W)
        augmented = self.fuse(torch.cat([context, features], dim=1))
        return region_logits, self.seg_conv(augmented)
