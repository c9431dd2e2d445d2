"""The classification head: global pooling and a two-layer MLP.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import torch
from torch import nn

from mtloca_lib.models.blocks import GlobalPool, GradientStop


class ClassificationHead(nn.Module):
    """Feature map -> class logits: (gradient stop) -> global pooling -> 2-layer MLP.

    The paper's classification module is "two layers of a multilayer perceptron"
    with three output neurons, on the backbone feature maps; it does not say how
    a map becomes a vector. We pool globally (``pool``, see
    :class:`~mtloca_lib.models.blocks.GlobalPool`); flattening a 128x128 map would
    put millions of weights in the first layer.

    Args:
        in_channels: C of the input map.
        n_classes: outputs (3 for BUSI and the phantom, 2 for UDIAT).
        hidden: width of the hidden layer.
        pool: "avg", "max" or "avgmax".
        dropout: dropout probability before the last layer.
        stop_gradient: put a :class:`GradientStop` in front, so the classification
            loss trains this head only (the UNet (ST) probe).

    Submodules:
        input: Identity or GradientStop (its output is the head's input map).
        pool, mlp (Linear -> ReLU -> Dropout -> Linear).

    Shapes:
        (B, C, H, W) -> (B, n_classes)
    """

    def __init__(self, in_channels: int, n_classes: int = 3, hidden: int = 64,
                 pool: str = "avgmax", dropout: float = 0.1, stop_gradient: bool = False):
        super().__init__()
        self.input = GradientStop() if stop_gradient else nn.Identity()
        self.pool = GlobalPool(pool)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels * self.pool.multiplier, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(self.input(x)))
