"""Small building blocks shared by every model: conv + GroupNorm units, residual,
plain and densely connected blocks, global pooling and a gradient stop.

GroupNorm rather than BatchNorm everywhere (the paper's backbone uses GroupNorm):
its statistics do not depend on the batch, so batch size 1 behaves like batch 16.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import torch
from torch import nn

#: Block kinds understood by :func:`make_block`.
BLOCK_KINDS = ("residual", "plain", "dense")


def group_count(channels: int, max_groups: int) -> int:
    """The number of GroupNorm groups for ``channels``.

    The largest divisor of ``channels`` that is at most ``max_groups``, so any
    width works with any ``gn_groups`` setting (e.g. 8 groups ask for 8, a
    12-channel tensor gets 6). A negative ``max_groups = -c`` asks for groups of
    ``c`` channels instead (``ModelConfig.gn_channels``): at most ``channels // c``
    groups, at least one (16-channel groups give 1 group at width 16, 8 at 128).

    Args:
        channels: number of channels to normalise.
        max_groups: the configured ``gn_groups``, or minus the channels per group.
    """
    if max_groups < 0:
        max_groups = max(1, channels // -max_groups)
    if channels < 1 or max_groups < 1:
        raise ValueError(f"channels ({channels}) and max_groups ({max_groups}) must be >= 1")
    for groups in range(min(channels, max_groups), 0, -1):
        if channels % groups == 0:
            return groups
    return 1  # unreachable: 1 divides everything


class ConvGNAct(nn.Sequential):
    """Conv2d (no bias) -> GroupNorm -> ReLU (the ReLU optional).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: odd kernel size; padding keeps H and W.
        gn_groups: maximum number of GroupNorm groups (see :func:`group_count`).
        act: append a ReLU.

    Shapes:
        (B, C_in, H, W) -> (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 gn_groups: int = 8, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.GroupNorm(group_count(out_channels, gn_groups), out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 ConvGN units with an identity (or 1x1 projection) shortcut.

    ``relu(GN(conv(relu(GN(conv(x))))) + shortcut(x))``; the shortcut is a 1x1
    ConvGN when the width changes.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        gn_groups: maximum number of GroupNorm groups.

    Shapes:
        (B, C_in, H, W) -> (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, gn_groups: int = 8):
        super().__init__()
        self.conv1 = ConvGNAct(in_channels, out_channels, 3, gn_groups)
        self.conv2 = ConvGNAct(out_channels, out_channels, 3, gn_groups, act=False)
        self.shortcut = (
            nn.Identity() if in_channels == out_channels
            else ConvGNAct(in_channels, out_channels, 1, gn_groups, act=False)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class PlainBlock(nn.Sequential):
    """The classic UNet "double conv": two 3x3 ConvGNAct units, no shortcut.

    Shapes:
        (B, C_in, H, W) -> (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, gn_groups: int = 8):
        super().__init__(
            ConvGNAct(in_channels, out_channels, 3, gn_groups),
            ConvGNAct(out_channels, out_channels, 3, gn_groups),
        )


class DenseBlock(nn.Module):
    """A DenseNet-style block (Huang et al., CVPR 2017) followed by a 1x1 transition.

    Layer j sees the concatenation of the block input and the outputs of layers
    0..j-1 and adds ``growth`` new channels (3x3 ConvGNAct). A 1x1 ConvGNAct
    transition maps the concatenation of everything to ``out_channels``.

    Args:
        in_channels: C_in.
        out_channels: C_out (after the transition).
        n_layers: number of densely connected layers.
        growth: channels each layer adds (default ``max(1, out_channels // 2)``).
        gn_groups: maximum number of GroupNorm groups.

    Shapes:
        (B, C_in, H, W) -> (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, n_layers: int = 3,
                 growth: int | None = None, gn_groups: int = 8):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"DenseBlock needs n_layers >= 1, got {n_layers}")
        growth = growth or max(1, out_channels // 2)
        self.layers = nn.ModuleList(
            ConvGNAct(in_channels + j * growth, growth, 3, gn_groups) for j in range(n_layers)
        )
        self.transition = ConvGNAct(in_channels + n_layers * growth, out_channels, 1, gn_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return self.transition(torch.cat(features, dim=1))


def make_block(kind: str, in_channels: int, out_channels: int, gn_groups: int = 8,
               dense_layers: int = 3) -> nn.Module:
    """Build one encoder/decoder block by name.

    Args:
        kind: "residual" (:class:`ResidualBlock`), "plain" (:class:`PlainBlock`) or
            "dense" (:class:`DenseBlock`).
        in_channels, out_channels: widths.
        gn_groups: maximum number of GroupNorm groups.
        dense_layers: layers per dense block (``kind="dense"`` only).
    """
    if kind == "residual":
        return ResidualBlock(in_channels, out_channels, gn_groups)
    if kind == "plain":
        return PlainBlock(in_channels, out_channels, gn_groups)
    if kind == "dense":
        return DenseBlock(in_channels, out_channels, dense_layers, gn_groups=gn_groups)
    raise ValueError(f"unknown block kind {kind!r}; choose one of {BLOCK_KINDS}")


#: Pooling modes understood by :class:`GlobalPool`.
POOL_MODES = ("avg", "max", "avgmax")


class GlobalPool(nn.Module):
    """Global pooling of a feature map to one vector per image.

    Args:
        mode: "avg" (mean over pixels), "max" (maximum over pixels) or "avgmax"
            (both, concatenated: twice the channels).

    Shapes:
        (B, C, H, W) -> (B, C * multiplier), multiplier 2 for "avgmax", else 1.
    """

    def __init__(self, mode: str = "avgmax"):
        super().__init__()
        if mode not in POOL_MODES:
            raise ValueError(f"unknown pooling {mode!r}; choose one of {POOL_MODES}")
        self.mode = mode
        self.multiplier = 2 if mode == "avgmax" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, H*W)
        if self.mode == "avg":
            return flat.mean(dim=2)
        if self.mode == "max":
            return flat.amax(dim=2)
        return torch.cat([flat.mean(dim=2), flat.amax(dim=2)], dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class GradientStop(nn.Module):
    """Identity in the forward pass; no gradient flows back through it.

    Unlike a bare ``x.detach()``, the output is a fresh leaf that still requires
    grad while autograd is on, so a Grad-CAM hook on this module's output gets
    gradients from everything downstream; nothing upstream ever does.

    Shapes:
        (B, ...) -> (B, ...) unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.detach()
        if torch.is_grad_enabled() and x.is_floating_point():
            out.requires_grad_(True)
        return out
