"""The model presets by short name, the models each comparison of the paper uses, and how they are shown.

A preset name (``"mtl_oca"``) is the key every run, table and figure carries; its display name
(:data:`DISPLAY`, "MTL-OCA") and colour (:data:`MODEL_COLORS`) are looked up from the key when
printing or drawing, never parsed back.

May import: its own folder, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from typing import Any

#: Model presets by short name: the five configurations of the paper's tables, and
#: ``ablation_no_oca_same_cls`` (ours): no OCA, the classifier reading what the proposed
#: model's reads under the profile (its ``proposed_overrides`` apply to both), so that only the
#: OCA module differs from MTL-OCA.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "mtl_oca": {"arch": "mtl_oca", "variant": "proposed"},
    "ablation_no_oca": {"arch": "mtl_oca", "variant": "no_oca"},
    "ablation_oca_cls_from_mask": {"arch": "mtl_oca", "variant": "oca_cls_from_mask"},
    "unet_st": {"arch": "unet_st"},
    "mt_dunet": {"arch": "mt_dunet"},
    "ablation_no_oca_same_cls": {"arch": "mtl_oca", "variant": "no_oca_same_cls"},
    # A reference row, not one of the paper's models (issue 41): MONAI's DynUNet as nnU-Net plans it
    # for 128 px (six stages, 3x3 kernels, strides 1-2-2-2-2-2), nnU-Net's deep supervision (H/2, H/4,
    # H/8) and UNet (ST)'s detached probe on its bottleneck; nnU-Net's filters (32-64-128-256-512-512)
    # from base 24 instead of 32, the widest tried that keeps a 5-fold run under twice MTL-OCA's cost
    # on the CPU recipe (1.5x at one thread; nnU-Net's own 2.2x; docs/models.md).
    "dynunet": {"arch": "dynunet", "filters": [24, 48, 96, 192, 384, 512], "deep_supervision": 3},
}
#: Model variants that take the profile's ``proposed_overrides`` (the classifier's source).
SAME_CLS_VARIANTS = (None, "proposed", "no_oca_same_cls")

#: Display names of the model presets, as the paper's tables name them.
DISPLAY = {
    "unet_st": "UNet (ST)",
    "mt_dunet": "MT-DUNet",
    "mtl_oca": "MTL-OCA",
    "ablation_no_oca": "(1) no OCA, cls from mask",
    "ablation_oca_cls_from_mask": "(2) OCA, cls from OCA mask",
    "ablation_no_oca_same_cls": "(1b) no OCA, cls as MTL-OCA",
    "dynunet": "DynUNet (nnU-Net network)",
}
#: One colour per model in every figure (title text of its panels, its curves): matplotlib's
#: tab10 colours, MTL-OCA in the first.
MODEL_COLORS = {
    "mtl_oca": "#1f77b4",
    "unet_st": "#ff7f0e",
    "mt_dunet": "#2ca02c",
    "ablation_no_oca": "#9467bd",
    "ablation_oca_cls_from_mask": "#8c564b",
    "ablation_no_oca_same_cls": "#e377c2",
    "dynunet": "#7f7f7f",
}

#: Models compared in Tables 2-5 and Figures 4-5, 7.
COMPARISON_MODELS = ("unet_st", "mt_dunet", "mtl_oca")
#: Table 6: the ablation's three configurations, the proposed model last.
ABLATION_MODELS = ("ablation_no_oca", "ablation_oca_cls_from_mask", "mtl_oca")
#: Our extra Table 6 configuration (MTL-OCA without OCA, classifier as MTL-OCA's: only the OCA
#: module differs), shown beside the paper's where its run exists.
EXTRA_ABLATION_MODELS = ("ablation_no_oca_same_cls",)
#: The paper's five configurations: what notebook 01 trains.
ALL_MODELS = ("unet_st", "mt_dunet", "mtl_oca", "ablation_no_oca", "ablation_oca_cls_from_mask")


class Label(str):
    """A name printed for a run that is not just its model (e.g. "UNet (ST), 80 epochs"): a string
    for tables, carrying the model key it was made from, so a figure finds the model's colour
    without reading the text back."""

    model: str

    def __new__(cls, text: str, model: str) -> "Label":
        obj = super().__new__(cls, text)
        obj.model = model
        return obj


def display_name(model: str) -> str:
    """How tables name a preset ("mtl_oca" -> "MTL-OCA"); other names as given."""
    return DISPLAY.get(model, model)


def model_color(name: str, default: str | None = None) -> str | None:
    """The figure colour of a model by preset name, display name or :class:`Label`; ``default`` for
    anything else (e.g. "image", "ground truth")."""
    if isinstance(name, Label):  # the model it was made from: a preset key or a display name
        return model_color(name.model, default)
    if name in MODEL_COLORS:
        return MODEL_COLORS[name]
    preset = next((p for p, shown in DISPLAY.items() if shown == name), None)
    return MODEL_COLORS[preset] if preset else default
