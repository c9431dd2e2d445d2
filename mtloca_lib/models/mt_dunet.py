"""MT-DUNet: a multi-task UNet with densely connected encoder blocks.

The paper's reference 59 ("MT-DUNet" / "MTL-DUNet") could not be identified, so
this is our own design in the spirit of its description ("a well-established
multi-task learning model" for BUS segmentation and classification) and of the
paper's contrast with "MTL methods [that] rely on ... features learned from the
down-sampling path (e.g., UNet's encoder)":

- encoder and bottleneck: DenseNet dense blocks (Huang et al., CVPR 2017), each
  followed by a 1x1 transition to the level width, as in dense UNets such as
  FC-DenseNet (Jegou et al., CVPRW 2017);
- decoder: plain UNet levels (Upsample + ConvGN, skip concatenation, double conv);
- classification branch: pooling + the same two-layer MLP as MTL-OCA, on the
  bottleneck features, trained jointly (the classification loss shapes the
  encoder, unlike UNet (ST)).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtloca_lib.models.heads import ClassificationHead
from mtloca_lib.models.resunet import UNetBackbone, aux_outputs


class MTDUNet(nn.Module):
    """Multi-task dense UNet: segmentation decoder + classification from the bottleneck.

    Args:
        in_channels: 1 or 2.
        n_classes: classification outputs.
        widths, bottleneck_width, gn_groups, up_conv, deep_supervision: see :class:`UNetBackbone`.
        dense_layers: layers per dense block (growth rate: half the level width).
        cls_pool, cls_hidden, dropout: see :class:`ClassificationHead`.

    Attributes:
        gradcam_layer: ``"backbone.bottleneck"``, the classification branch's input.

    Returns (forward):
        dict with "seg" (B, 2, H, W) and "cls" (B, n_classes).
    """

    def __init__(self, in_channels: int = 2, n_classes: int = 3,
                 widths: Sequence[int] = (16, 32, 64), bottleneck_width: int = 128,
                 gn_groups: int = 8, dense_layers: int = 3, cls_pool: str = "avgmax",
                 cls_hidden: int = 64, dropout: float = 0.1, up_conv: bool = True,
                 deep_supervision: int = 0):
        super().__init__()
        self.backbone = UNetBackbone(in_channels, widths, bottleneck_width, gn_groups,
                                     encoder_block="dense", decoder_block="plain",
                                     dense_layers=dense_layers, up_conv=up_conv,
                                     deep_supervision=deep_supervision)
        self.seg_head = nn.Conv2d(self.backbone.out_channels, 2, 1)
        self.cls_head = ClassificationHead(bottleneck_width, n_classes, cls_hidden, cls_pool,
                                           dropout)
        self.gradcam_layer = "backbone.bottleneck"

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        skips, bottom = self.backbone.encode(x)
        features, aux = self.backbone.decode_with_aux(skips, bottom)
        return {"seg": self.seg_head(features), "cls": self.cls_head(bottom), **aux_outputs(aux)}
