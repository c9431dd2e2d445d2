"""MTL-OCA: Res-UNet backbone + object contextual attention + classification MLP,
with the paper's Table 6 ablation variants selected by one argument.

Variants (``variant``):

- ``"proposed"`` (Table 6, configuration 3): OCA produces the final mask; the
  classifier reads the backbone features X (the paper's "unenhanced" features).
  The classification loss never reaches the OCA module.
- ``"no_oca"`` (configuration 1): no OCA; a 1x1 conv on X (``mask_head``) is the
  final mask, and the classifier reads that mask's logits.
- ``"oca_cls_from_mask"`` (configuration 2): OCA as in the proposed model, but the
  classifier reads the OCA-enhanced mask logits.
- ``"no_oca_same_cls"`` (not in the paper): no OCA, the 1x1 conv on X is the final mask
  as in configuration 1, but the classifier reads what the proposed model's reads
  (``cls_source``). Against the proposed model only the OCA module differs, so it asks
  Table 6's question (does OCA help?) without moving where the classification loss
  enters the network.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtloca_lib.models.heads import ClassificationHead
from mtloca_lib.models.oca import ObjectContextualAttention
from mtloca_lib.models.resunet import ResUNet, aux_outputs

#: Allowed values of ``MTLOCA(variant=...)``.
MTLOCA_VARIANTS = ("proposed", "no_oca", "oca_cls_from_mask", "no_oca_same_cls")
#: Variants whose classifier reads backbone features (``cls_source``), not a mask.
FEATURE_CLS_VARIANTS = ("proposed", "no_oca_same_cls")
#: Which backbone features the proposed variant's classifier reads (``cls_source``).
CLS_SOURCES = ("decoder", "bottleneck")


class MTLOCA(nn.Module):
    """Multi-task segmentation + classification network with OCA.

    Args:
        in_channels: 1 (image) or 2 (image + Gaussian-derivative magnitude).
        n_classes: classification outputs (3 for BUSI, 2 for UDIAT).
        widths, bottleneck_width, gn_groups, up_conv, deep_supervision: backbone (see
            :class:`ResUNet`).
        variant: one of :data:`MTLOCA_VARIANTS`.
        key_channels: d of the OCA relation (default: ``widths[0]``).
        cls_pool, cls_hidden, dropout: classification head (see
            :class:`ClassificationHead`).
        cls_source: variants in :data:`FEATURE_CLS_VARIANTS` only: the backbone features the classifier reads:
            "decoder" (the full-resolution output X of the Res-UNet, default) or
            "bottleneck" (the deepest encoder features, ``bottleneck_width`` channels at
            H/8). The paper says "the backbone feature maps"; both are.

    Attributes:
        gradcam_layer: name (for ``model.get_submodule``) of the module whose
            output is the feature map the classification head reads.

    Returns (forward):
        dict with "seg" (B, 2, H, W) final mask logits, "seg_soft" (B, 2, H, W) soft
        object region logits (OCA variants only), "cls" (B, n_classes) logits, and with
        deep supervision "seg_ds1", "seg_ds2", ... (B, 2, H / 2**k, W / 2**k).
    """

    def __init__(self, in_channels: int = 2, n_classes: int = 3,
                 widths: Sequence[int] = (16, 32, 64), bottleneck_width: int = 128,
                 gn_groups: int = 8, variant: str = "proposed", key_channels: int | None = None,
                 cls_pool: str = "avgmax", cls_hidden: int = 64, dropout: float = 0.1,
                 cls_source: str = "decoder", up_conv: bool = True, deep_supervision: int = 0):
        super().__init__()
        if variant not in MTLOCA_VARIANTS:
            raise ValueError(f"unknown MTL-OCA variant {variant!r}; choose one of {MTLOCA_VARIANTS}")
        if cls_source not in CLS_SOURCES:
            raise ValueError(f"unknown cls_source {cls_source!r}; choose one of {CLS_SOURCES}")
        if cls_source != "decoder" and variant not in FEATURE_CLS_VARIANTS:
            raise ValueError(f"cls_source={cls_source!r} only applies to the variants {FEATURE_CLS_VARIANTS} "
                             f"(variant {variant!r} classifies from a mask)")
        self.variant = variant
        self.cls_source = cls_source
        self.backbone = ResUNet(in_channels, widths, bottleneck_width, gn_groups, up_conv, deep_supervision)
        channels = self.backbone.out_channels
        last_decoder = f"backbone.decoder.{len(self.backbone.decoder) - 1}"

        if variant in ("no_oca", "no_oca_same_cls"):
            self.mask_head = nn.Conv2d(channels, 2, 1)
        else:
            self.oca = ObjectContextualAttention(channels, key_channels, 2, 2, gn_groups)
        if variant == "no_oca":
            cls_in, self.gradcam_layer = 2, "mask_head"
        elif variant == "oca_cls_from_mask":
            cls_in, self.gradcam_layer = 2, "oca.seg_conv"
        elif cls_source == "bottleneck":
            cls_in, self.gradcam_layer = self.backbone.bottleneck_width, "backbone.bottleneck"
        else:
            cls_in, self.gradcam_layer = channels, last_decoder
        self.cls_head = ClassificationHead(cls_in, n_classes, cls_hidden, cls_pool, dropout)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        skips, bottom = self.backbone.encode(x)          # bottom (B, C_b, H/8, W/8)
        features, aux = self.backbone.decode_with_aux(skips, bottom)   # (B, C, H, W); deep supervision
        if self.variant == "no_oca":
            seg = self.mask_head(features)
            return {"seg": seg, "cls": self.cls_head(seg), **aux_outputs(aux)}
        if self.variant == "no_oca_same_cls":
            cls_input = bottom if self.cls_source == "bottleneck" else features
            return {"seg": self.mask_head(features), "cls": self.cls_head(cls_input), **aux_outputs(aux)}
        seg_soft, seg = self.oca(features)
        if self.variant == "oca_cls_from_mask":
            cls_input = seg
        else:
            cls_input = bottom if self.cls_source == "bottleneck" else features
        return {"seg": seg, "seg_soft": seg_soft, "cls": self.cls_head(cls_input), **aux_outputs(aux)}
