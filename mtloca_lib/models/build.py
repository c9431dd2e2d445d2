"""Name a model by a plain config: :class:`ModelConfig` and :func:`build_model`.

A ``ModelConfig`` round-trips through a dict (and so through JSON or YAML)::

    cfg = ModelConfig(arch="mtl_oca", variant="no_oca", widths=(8, 16, 32))
    model = build_model(cfg)                   # or build_model(cfg.to_dict())
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from mtloca_lib.models.blocks import POOL_MODES
from mtloca_lib.models.dynunet import NNUNET_FILTERS_128, DynUNetST
from mtloca_lib.models.mt_dunet import MTDUNet
from mtloca_lib.models.mtl_oca import FEATURE_CLS_VARIANTS, MTLOCA, MTLOCA_VARIANTS
from mtloca_lib.models.unet import UNetST
from mtloca_lib.models.weight_init import INIT_SCHEMES, initialise

#: Allowed values of ``ModelConfig.arch``.
ARCHS = ("mtl_oca", "unet_st", "mt_dunet", "dynunet")


@dataclass
class ModelConfig:
    """Everything needed to build one model.

    Args:
        arch: "mtl_oca" (:class:`MTLOCA`), "unet_st" (:class:`UNetST`),
            "mt_dunet" (:class:`MTDUNet`) or "dynunet" (:class:`DynUNetST`, MONAI's DynUNet
            as nnU-Net plans it: a reference model, not one of the paper's).
        variant: mtl_oca only: "proposed" (default), "no_oca" or
            "oca_cls_from_mask" (the paper's Table 6 configurations 3, 1, 2), or
            "no_oca_same_cls" (no OCA, classifier as the proposed model's; ours).
            Must stay None for the other archs.
        n_classes: classification outputs (3 for BUSI and the phantom, 2 for UDIAT).
        in_channels: 2 (image + Gaussian-derivative magnitude) or 1 (image only).
        widths: encoder widths per level, full resolution first; the input side
            must be divisible by 2 ** len(widths) (8 for three levels). Not read by
            "dynunet" (its widths are ``filters``).
        bottleneck_width: width of the bottleneck (None: 2 * widths[-1]).
        gn_groups: maximum GroupNorm groups (a width that is not divisible gets
            its largest divisor below this).
        gn_channels: channels per GroupNorm group instead (None: use ``gn_groups``);
            e.g. 16 gives 1 group at width 16 and 8 groups at width 128.
        cls_pool: how the classification head turns a map into a vector:
            "avg", "max" or "avgmax" (both, concatenated).
        cls_hidden: hidden width of the two-layer classification MLP.
        dropout: dropout in the classification MLP.
        cls_source: mtl_oca "proposed" and "no_oca_same_cls" variants only: "decoder"
            (default) or "bottleneck", the backbone features the classifier reads.
        key_channels: mtl_oca with OCA only: d of the pixel-region relation
            (None: widths[0]).
        dense_layers: mt_dunet only: layers per dense block.
        cls_probe: unet_st and dynunet only: attach the detached classification probe.
        up_conv: each decoder level applies a 3x3 convolution to the upsampled map
            before the skip concatenation (default True); False leaves it out, so the
            level's block reads the upsampled map and the skip directly.
        deep_supervision: the number of coarser decoder levels (H/2, H/4, ...) with a mask
            head of their own, whose outputs "seg_ds1", ... the loss supervises (nnU-Net's
            deep supervision; not in the paper); 0 (default) adds none. For "dynunet" the
            outputs exist in training mode only (nnU-Net keeps 3: H/2, H/4, H/8).
        filters: dynunet only: filters per stage, full resolution first (None: nnU-Net's own
            for 128 px inputs, 32-64-128-256-512-512; input side a multiple of
            2 ** (len(filters) - 1)).
        init: weight initialisation, "default" (PyTorch's per-layer defaults) or "kaiming"
            (He-normal, zero biases; :mod:`mtloca_lib.models.weight_init`).
    """

    arch: str = "mtl_oca"
    variant: str | None = None
    n_classes: int = 3
    in_channels: int = 2
    widths: tuple[int, ...] = (16, 32, 64)
    bottleneck_width: int | None = None
    gn_groups: int = 8
    gn_channels: int | None = None
    cls_pool: str = "avgmax"
    cls_hidden: int = 64
    dropout: float = 0.1
    key_channels: int | None = None
    cls_source: str = "decoder"
    dense_layers: int = 3
    cls_probe: bool = True
    up_conv: bool = True
    deep_supervision: int = 0
    init: str = "default"
    filters: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {ARCHS}")
        if self.arch == "mtl_oca":
            if self.variant is not None and self.variant not in MTLOCA_VARIANTS:
                raise ValueError(
                    f"unknown mtl_oca variant {self.variant!r}; choose one of {MTLOCA_VARIANTS}"
                )
        elif self.variant is not None:
            raise ValueError(
                f"variant={self.variant!r} only applies to arch='mtl_oca' (got arch={self.arch!r}); "
                "leave it out"
            )
        if self.filters is not None:
            self.filters = tuple(int(f) for f in self.filters)
            if self.arch != "dynunet":
                raise ValueError(f"filters={list(self.filters)} only applies to arch='dynunet' "
                                 f"(got arch={self.arch!r}); use widths")
            if len(self.filters) < 3 or min(self.filters) < 1:
                raise ValueError(f"filters must be at least 3 positive integers, got {list(self.filters)}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive integers, got {self.widths}")
        positive = {"n_classes": self.n_classes, "in_channels": self.in_channels,
                    "gn_groups": self.gn_groups, "cls_hidden": self.cls_hidden,
                    "dense_layers": self.dense_layers}
        for name in ("bottleneck_width", "key_channels", "gn_channels"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.cls_source != "decoder" and self.resolved_variant not in FEATURE_CLS_VARIANTS:
            raise ValueError(f"cls_source={self.cls_source!r} only applies to arch='mtl_oca' with a "
                             f"variant in {FEATURE_CLS_VARIANTS} (got {self.label})")
        if self.cls_pool not in POOL_MODES:
            raise ValueError(f"unknown cls_pool {self.cls_pool!r}; choose one of {POOL_MODES}")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"unknown init {self.init!r}; choose one of {INIT_SCHEMES}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    # ---- derived values ----------------------------------------------------
    @property
    def resolved_variant(self) -> str | None:
        """The variant actually built ("proposed" when mtl_oca leaves it out)."""
        return (self.variant or "proposed") if self.arch == "mtl_oca" else None

    @property
    def resolved_filters(self) -> tuple[int, ...] | None:
        """dynunet: the filters built (nnU-Net's for 128 px when left out); None for other archs."""
        if self.arch != "dynunet":
            return None
        return self.filters or NNUNET_FILTERS_128

    @property
    def resolved_bottleneck_width(self) -> int:
        if self.arch == "dynunet":
            return self.resolved_filters[-1]
        return self.bottleneck_width or 2 * self.widths[-1]

    @property
    def input_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        if self.arch == "dynunet":
            return 2 ** (len(self.resolved_filters) - 1)
        return 2 ** len(self.widths)

    @property
    def label(self) -> str:
        """A short human name, e.g. "mtl_oca/no_oca" or "unet_st"."""
        return f"{self.arch}/{self.resolved_variant}" if self.arch == "mtl_oca" else self.arch

    # ---- serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (widths as a list)."""
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        if self.filters is not None:
            d["filters"] = list(self.filters)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises:
            ValueError: for keys that are not fields (the message lists the valid
                ones), or for invalid values.
        """
        if isinstance(d, cls):
            return d
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; valid fields are {known}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        """Read a config from a .json or .yaml/.yml file."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            return cls.from_dict(yaml.safe_load(text) or {})
        return cls.from_dict(json.loads(text))


def build_model(config: ModelConfig | dict[str, Any]) -> nn.Module:
    """Build any model of the project from its config.

    Args:
        config: a :class:`ModelConfig` or a dict for :meth:`ModelConfig.from_dict`.

    Returns:
        The model; ``model(x)`` returns a dict ("seg", optionally "seg_soft" and
        "cls"), ``model.gradcam_layer`` names the module whose output the
        classification head reads, and ``model.config`` is the ModelConfig.
    """
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
    if cfg.arch == "dynunet":
        model: nn.Module = DynUNetST(in_channels=cfg.in_channels, n_classes=cfg.n_classes,
                                     filters=cfg.resolved_filters, deep_supervision=cfg.deep_supervision,
                                     cls_pool=cfg.cls_pool, cls_hidden=cfg.cls_hidden, dropout=cfg.dropout,
                                     cls_probe=cfg.cls_probe)
        initialise(model, cfg.init)
        model.config = cfg
        return model
    common = dict(in_channels=cfg.in_channels, n_classes=cfg.n_classes, widths=cfg.widths,
                  bottleneck_width=cfg.resolved_bottleneck_width,
                  gn_groups=-cfg.gn_channels if cfg.gn_channels else cfg.gn_groups,
                  cls_pool=cfg.cls_pool, cls_hidden=cfg.cls_hidden, dropout=cfg.dropout,
                  up_conv=cfg.up_conv, deep_supervision=cfg.deep_supervision)
    if cfg.arch == "mtl_oca":
        model = MTLOCA(variant=cfg.resolved_variant, key_channels=cfg.key_channels,
                                  cls_source=cfg.cls_source, **common)
    elif cfg.arch == "unet_st":
        model = UNetST(cls_probe=cfg.cls_probe, **common)
    else:
        model = MTDUNet(dense_layers=cfg.dense_layers, **common)
    initialise(model, cfg.init)
    model.config = cfg
    return model
