"""DynUNet (nnU-Net's network): MONAI's ``DynUNet`` as a 2D reference model, with UNet (ST)'s probe.

For 2D medical segmentation the field's default is nnU-Net (Isensee et al., Nat. Methods 2021),
whose network MONAI ships as :class:`monai.networks.nets.DynUNet`. This module builds it the way
nnU-Net's planner would for this project's square inputs, adds the stop-gradient classification
probe of UNet (ST) on its bottleneck (so the tables can show its accuracy), and returns the
project's output dict.

**Topology** (:func:`nnunet_plan_2d`). nnU-Net's 2D planner (``get_pool_and_conv_props`` with
``UNet_featuremap_min_edge_length = 4``) keeps halving an axis while it is at least twice the
minimal feature-map edge (4 px), uses 3x3 kernels on every stage of isotropic images, and gives
stage i ``min(32 * 2**i, 512)`` filters (base 32, doubling, capped at 512 in 2D). For 128x128
inputs that is 128 -> 64 -> 32 -> 16 -> 8 -> 4: five poolings, six stages,

- kernels ``[3, 3, 3, 3, 3, 3]`` (3x3 everywhere),
- strides ``[1, 2, 2, 2, 2, 2]`` (the first stage at full resolution; downsampling by the
  strided first convolution of each later stage, as nnU-Net does), transposed-convolution
  kernels ``[2, 2, 2, 2, 2]``,
- nnU-Net's filters ``[32, 64, 128, 256, 512, 512]``, a 4x4 bottleneck. The filters are a
  parameter here (``ModelConfig.filters``); the preset uses narrower ones for the CPU budget.

Each stage is two 3x3 convolutions, each followed by InstanceNorm (affine) and LeakyReLU (0.01);
the decoder upsamples with a transposed convolution, concatenates the skip and applies two such
convolutions; weights are He-normal (a = 0.01), as MONAI and nnU-Net initialise them.

**Deep supervision**, as nnU-Net uses it: 1x1 segmentation heads on the decoder stages at H/2,
H/4, H/8 return "seg_ds1", "seg_ds2", "seg_ds3" (B, 2, H/2**k, W/2**k) in training mode only (in
eval mode "seg" alone). nnU-Net weights its decoder outputs 1, 1/2, 1/4, 1/8, 1/16 (full resolution
first), sets the lowest (H/16, the stage above the bottleneck) to 0 and normalises the weights to
sum 1 (0.533, 0.267, 0.133, 0.067); its loss is computed at each output's own size against the
mask downsampled to it. :class:`~mtloca_lib.models.losses.MultiTaskLoss` weights "seg_ds{k}" by
2**-k against the mask downsampled to its size, and with ``ds_normalise=True`` divides the mask
terms by the weights' sum: nnU-Net's weights. ``deep_supervision`` = 3 keeps exactly nnU-Net's
non-zero levels; the H/16 head is never built.

**Probe**: a :class:`~mtloca_lib.models.heads.ClassificationHead` behind a gradient stop reads the
bottleneck, (B, filters[-1], H / 2**(L-1), W / 2**(L-1)) for L stages: the classification loss
trains the probe only. The forward pass composes MONAI's own blocks (``input_block``,
``downsamples``, ``bottleneck``, ``upsamples``, ``output_block``, ``deep_supervision_heads``) in
the order ``DynUNet.forward`` runs them, so the bottleneck output and the un-interpolated
deep-supervision logits are at hand without hooks; ``tests/test_dynunet.py`` checks the result
equals ``DynUNet.forward``.

Departures from nnU-Net: MONAI's convolutions carry no bias (before InstanceNorm a bias is
removed by the normalisation anyway); nnU-Net downsamples the mask by nearest-neighbour
resampling, the loss here by majority over each block.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.nets import DynUNet
from torch import nn

from mtloca_lib.models.heads import ClassificationHead

#: nnU-Net's 2D planner: the smallest feature-map edge it pools down to, its base width and its cap.
NNUNET_MIN_EDGE = 4
NNUNET_BASE_FILTERS = 32
NNUNET_MAX_FILTERS_2D = 512


@dataclass(frozen=True)
class Plan2D:
    """A 2D network plan: per stage (full resolution first) its kernel, stride and filters."""

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    filters: tuple[int, ...]

    @property
    def input_multiple(self) -> int:
        """Input height and width must be multiples of this (the product of the strides)."""
        out = 1
        for s in self.strides:
            out *= s
        return out


def nnunet_plan_2d(size: int = 128, base_filters: int = NNUNET_BASE_FILTERS,
                   max_filters: int = NNUNET_MAX_FILTERS_2D, min_edge: int = NNUNET_MIN_EDGE) -> Plan2D:
    """The stages nnU-Net's 2D planner chooses for square ``size`` x ``size`` inputs of isotropic spacing.

    Pools (stride 2) while the map is at least ``2 * min_edge`` px, 3x3 kernels on every stage,
    stage i gets ``min(base_filters * 2**i, max_filters)`` filters.

    Args:
        size: input side in pixels.
        base_filters, max_filters: nnU-Net's 32 and 512 (2D) by default.
        min_edge: the smallest feature-map edge (nnU-Net: 4).

    Returns:
        the plan; for 128 px: kernels (3,) * 6, strides (1, 2, 2, 2, 2, 2),
        filters (32, 64, 128, 256, 512, 512).
    """
    if size < 1 or base_filters < 1 or max_filters < 1 or min_edge < 1:
        raise ValueError(f"size, filters and min_edge must be positive, got {size}, {base_filters}, "
                         f"{max_filters}, {min_edge}")
    strides, edge = [1], size
    while edge >= 2 * min_edge:
        strides.append(2)
        edge = -(-edge // 2)
    filters = tuple(min(base_filters * 2 ** i, max_filters) for i in range(len(strides)))
    return Plan2D(kernels=(3,) * len(strides), strides=tuple(strides), filters=filters)


#: nnU-Net's own filters for this project's 128 px inputs (the network it would train).
NNUNET_FILTERS_128 = nnunet_plan_2d(128).filters


class DynUNetST(nn.Module):
    """MONAI's DynUNet in 2D, planned as nnU-Net does, with deep supervision and a detached probe.

    Args:
        in_channels: 1 or 2.
        n_classes: classification outputs of the probe.
        filters: per stage, full resolution first (L >= 3 stages; stage 0 at full resolution,
            each later one at half the previous); nnU-Net's for 128 px are
            :data:`NNUNET_FILTERS_128`. Kernels are 3x3, strides ``[1, 2, ..., 2]``.
        deep_supervision: decoder stages H/2, ..., H/2**k with a segmentation head of their own
            ("seg_ds1", ... in training mode); 0 for none, at most L - 2 (nnU-Net keeps 3 of its
            4 for six stages, see the module docstring).
        cls_pool, cls_hidden, dropout: the probe (see :class:`ClassificationHead`).
        cls_probe: attach the probe; without it the model returns no "cls".

    Attributes:
        net: the ``monai.networks.nets.DynUNet``.
        plan: the network's :class:`Plan2D`.
        gradcam_layer: ``"cls_head.input"`` (the probe's gradient stop), or None without the probe.

    Returns (forward):
        dict with "seg" (B, 2, H, W); in training mode "seg_ds1" .. "seg_ds{deep_supervision}",
        (B, 2, H / 2**k, W / 2**k); with the probe "cls" (B, n_classes). H and W must be
        multiples of 2**(L-1).
    """

    def __init__(self, in_channels: int = 2, n_classes: int = 3,
                 filters: Sequence[int] = NNUNET_FILTERS_128, deep_supervision: int = 3,
                 cls_pool: str = "avgmax", cls_hidden: int = 64, dropout: float = 0.1,
                 cls_probe: bool = True):
        super().__init__()
        filters = tuple(int(f) for f in filters)
        if len(filters) < 3 or min(filters) < 1:
            raise ValueError(f"DynUNet needs at least 3 stages of positive filters, got {filters}")
        if not 0 <= int(deep_supervision) <= len(filters) - 2:
            raise ValueError(f"deep_supervision must be between 0 and {len(filters) - 2} (the decoder stages "
                             f"between the output and the bottleneck), got {deep_supervision}")
        n = len(filters)
        self.plan = Plan2D(kernels=(3,) * n, strides=(1,) + (2,) * (n - 1), filters=filters)
        self.deep_supervision = int(deep_supervision)
        self.net = DynUNet(
            spatial_dims=2, in_channels=in_channels, out_channels=2,
            kernel_size=list(self.plan.kernels), strides=list(self.plan.strides),
            upsample_kernel_size=list(self.plan.strides[1:]), filters=list(filters),
            deep_supervision=self.deep_supervision > 0, deep_supr_num=max(self.deep_supervision, 1),
        )
        self.cls_head = (
            ClassificationHead(filters[-1], n_classes, cls_hidden, cls_pool, dropout, stop_gradient=True)
            if cls_probe else None
        )
        self.gradcam_layer = "cls_head.input" if cls_probe else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        m = self.plan.input_multiple
        if h % m or w % m:
            raise ValueError(f"input size {h}x{w} is not divisible by {m} (2 ** (stages - 1) of the "
                             f"DynUNet's {len(self.plan.filters)} stages); resize or pad the images")
        net = self.net
        skips = [net.input_block(x)]
        for down in net.downsamples:
            skips.append(down(skips[-1]))
        bottom = net.bottleneck(skips[-1])
        y, decoded = bottom, []  # decoded[j]: the decoder stage at H / 2**(L - 2 - j)
        for up, skip in zip(net.upsamples, reversed(skips)):
            y = up(y, skip)
            decoded.append(y)
        out = {"seg": net.output_block(y)}
        if self.training and self.deep_supervision:
            last = len(decoded) - 1
            for k, head in enumerate(net.deep_supervision_heads, start=1):
                out[f"seg_ds{k}"] = head(decoded[last - k])
        if self.cls_head is not None:
            out["cls"] = self.cls_head(bottom)
        return out
