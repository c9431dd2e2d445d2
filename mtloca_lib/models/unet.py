"""UNet (ST): the single-task segmentation baseline, with a detached classification probe.

The paper compares against "UNet (ST)", a single-task UNet (Ronneberger et al.,
2015), yet reports its classification results too. A single-task segmenter has
no classifier, so something separate must have been trained. We make that
explicit and keep it single-task: a classification head reads the bottleneck
(deepest encoder) features through a gradient stop. The segmentation network is
trained by the segmentation loss alone; the probe is trained by the
classification loss alone, in the same run. Its classification numbers measure
how much class information a segmentation-only network's encoder holds.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtloca_lib.models.heads import ClassificationHead
from mtloca_lib.models.resunet import UNetBackbone, aux_outputs


class UNetST(nn.Module):
    """Single-task UNet (plain double-conv blocks, GroupNorm) + detached probe.

    Args:
        in_channels: 1 or 2.
        n_classes: classification outputs of the probe.
        widths, bottleneck_width, gn_groups, up_conv, deep_supervision: see :class:`UNetBackbone`.
        cls_pool, cls_hidden, dropout: the probe (see :class:`ClassificationHead`).
        cls_probe: attach the probe; without it the model is a pure segmenter and
            returns no "cls".

    Attributes:
        gradcam_layer: ``"cls_head.input"``, the probe's gradient stop, whose output
            is the bottleneck map as the probe sees it (gradients reach it, and
            stop there).

    Returns (forward):
        dict with "seg" (B, 2, H, W) and, with the probe, "cls" (B, n_classes).
    """

    def __init__(self, in_channels: int = 2, n_classes: int = 3,
                 widths: Sequence[int] = (16, 32, 64), bottleneck_width: int = 128,
                 gn_groups: int = 8, cls_pool: str = "avgmax", cls_hidden: int = 64,
                 dropout: float = 0.1, cls_probe: bool = True, up_conv: bool = True,
                 deep_supervision: int = 0):
        super().__init__()
        self.backbone = UNetBackbone(in_channels, widths, bottleneck_width, gn_groups,
                                     encoder_block="plain", decoder_block="plain", up_conv=up_conv,
                                     deep_supervision=deep_supervision)
        self.seg_head = nn.Conv2d(self.backbone.out_channels, 2, 1)
        self.cls_head = (
            ClassificationHead(bottleneck_width, n_classes, cls_hidden, cls_pool, dropout,
                               stop_gradient=True)
            if cls_probe else None
        )
        self.gradcam_layer = "cls_head.input" if cls_probe else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        skips, bottom = self.backbone.encode(x)
        features, aux = self.backbone.decode_with_aux(skips, bottom)
        out = {"seg": self.seg_head(features), **aux_outputs(aux)}
        if self.cls_head is not None:
            out["cls"] = self.cls_head(bottom)
        return out
