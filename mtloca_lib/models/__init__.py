"""Models: the Res-UNet backbone, object contextual attention, the classification
head, MTL-OCA (and its ablation variants), UNet (ST) and MT-DUNet; and the reference
DynUNet (nnU-Net's network, MONAI's ``DynUNet``), which is not one of the paper's models.

Every model's ``forward(x)`` returns a dict: "seg" (B, 2, H, W) final mask
logits; "seg_soft" (B, 2, H, W) soft-object-region logits (OCA models only);
"cls" (B, n_classes) logits (absent for a pure segmenter); with deep supervision
"seg_ds1", "seg_ds2", ... (B, 2, H / 2**k, W / 2**k) (the DynUNet's in training mode
only). ``model.gradcam_layer``
names the module whose output is the classification head's input map;
:func:`gradcam_module` returns it.

Modules of this folder may import torch (and MONAI, for the DynUNet) and each other only:
never ``data``, ``engine`` or ``report`` (a model knows nothing of datasets or training).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from torch import nn

from mtloca_lib.models.blocks import GlobalPool, GradientStop, group_count
from mtloca_lib.models.build import ARCHS, ModelConfig, build_model
from mtloca_lib.models.dynunet import NNUNET_FILTERS_128, DynUNetST, nnunet_plan_2d
from mtloca_lib.models.heads import ClassificationHead
from mtloca_lib.models.mt_dunet import MTDUNet
from mtloca_lib.models.mtl_oca import MTLOCA, MTLOCA_VARIANTS
from mtloca_lib.models.oca import ObjectContextualAttention, PixelRegionAttention, RegionGather
from mtloca_lib.models.resunet import ResUNet, UNetBackbone
from mtloca_lib.models.unet import UNetST


def gradcam_module(model: nn.Module) -> nn.Module:
    """The module whose output the classification head reads (for Grad-CAM hooks).

    Raises:
        ValueError: when the model has no classification head.
    """
    name = getattr(model, "gradcam_layer", None)
    if not name:
        raise ValueError(f"{type(model).__name__} has no classification head to explain")
    return model.get_submodule(name)


__all__ = [
    "ARCHS", "MTLOCA_VARIANTS", "ModelConfig", "build_model", "gradcam_module",
    "MTLOCA", "UNetST", "MTDUNet", "DynUNetST", "NNUNET_FILTERS_128", "nnunet_plan_2d", "ResUNet", "UNetBackbone", "ObjectContextualAttention",
    "RegionGather", "PixelRegionAttention", "ClassificationHead", "GlobalPool",
    "GradientStop", "group_count",
]
