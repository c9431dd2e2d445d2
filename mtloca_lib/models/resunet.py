"""UNet-shaped encoder-decoder backbones; the Res-UNet of MTL-OCA is one of them.

:class:`UNetBackbone` is the shared skeleton (encoder levels with MaxPool, a
bottleneck, a symmetric decoder of Upsample + ConvGN + skip concatenation + block);
the block kind decides the flavour:

- ``ResUNet``: residual blocks everywhere (MTL-OCA's backbone, the paper's Fig. 2);
- plain blocks: the classic UNet (``unet.py``);
- dense encoder blocks, plain decoder: MT-DUNet (``mt_dunet.py``).

Module names (stable, used by Grad-CAM and the gradient tests), for L levels:
``encoder.0 .. encoder.{L-1}`` (full resolution first), ``bottleneck``,
``decoder.0 .. decoder.{L-1}`` (deepest first; ``decoder.{L-1}`` returns the
full-resolution features that ``forward`` returns).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtloca_lib.models.blocks import ConvGNAct, make_block


class DecoderLevel(nn.Module):
    """One decoder step: Upsample x2 -> 3x3 ConvGNAct -> concat skip -> block.

    With ``up_conv=False`` the 3x3 convolution after the upsampling is left out: the
    upsampled map is concatenated with the skip as it is, and the block reads both.

    Args:
        in_channels: C_in of the coarser map.
        skip_channels: C_s of the skip from the encoder level of the same size.
        out_channels: C_out.
        block: block kind (see :func:`make_block`).
        gn_groups: maximum number of GroupNorm groups.

    Shapes:
        x (B, C_in, h, w), skip (B, C_s, 2h, 2w) -> (B, C_out, 2h, 2w)
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 block: str = "residual", gn_groups: int = 8, dense_layers: int = 3,
                 up_conv: bool = True):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up_conv = ConvGNAct(in_channels, out_channels, 3, gn_groups) if up_conv else nn.Identity()
        upsampled = out_channels if up_conv else in_channels
        self.block = make_block(block, upsampled + skip_channels, out_channels, gn_groups,
                                dense_layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up_conv(self.up(x))
        return self.block(torch.cat([x, skip], dim=1))


class UNetBackbone(nn.Module):
    """Encoder (L levels) - bottleneck - symmetric decoder with skip connections.

    Args:
        in_channels: input channels (1: image; 2: image + Gaussian-derivative magnitude).
        widths: encoder widths per level, full resolution first, e.g. (16, 32, 64).
            The decoder mirrors them, so the output has ``widths[0]`` channels.
        bottleneck_width: width at the coarsest resolution (H / 2**L).
        gn_groups: maximum number of GroupNorm groups.
        encoder_block, decoder_block: block kinds (see :func:`make_block`); the
            bottleneck uses ``encoder_block``.
        dense_layers: layers per dense block (dense blocks only).
        up_conv: each decoder level convolves the upsampled map before the skip
            concatenation (default); False concatenates it as it is.
        deep_supervision: number of coarser decoder levels (H/2, H/4, ...) that get a 1x1
            mask head of their own for deep supervision (:meth:`decode_with_aux`); 0 (default)
            adds none. At most L - 1.

    Shapes:
        x (B, in_channels, H, W), H and W divisible by 2**L ->
        features (B, widths[0], H, W); auxiliary mask logits k = 1..deep_supervision:
        (B, 2, H / 2**k, W / 2**k).
    """

    def __init__(self, in_channels: int = 2, widths: Sequence[int] = (16, 32, 64),
                 bottleneck_width: int = 128, gn_groups: int = 8,
                 encoder_block: str = "residual", decoder_block: str = "residual",
                 dense_layers: int = 3, up_conv: bool = True, deep_supervision: int = 0):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ValueError("widths must name at least one encoder level")
        if not 0 <= int(deep_supervision) < len(widths):
            raise ValueError(f"deep_supervision must be between 0 and {len(widths) - 1} (the decoder levels "
                             f"coarser than the output), got {deep_supervision}")
        self.deep_supervision = int(deep_supervision)
        self.in_channels = in_channels
        self.widths = widths
        self.bottleneck_width = bottleneck_width
        self.out_channels = widths[0]
        self.downsample_factor = 2 ** len(widths)

        in_widths = (in_channels,) + widths[:-1]
        self.encoder = nn.ModuleList(
            make_block(encoder_block, c_in, c_out, gn_groups, dense_layers)
            for c_in, c_out in zip(in_widths, widths)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = make_block(encoder_block, widths[-1], bottleneck_width, gn_groups,
                                     dense_layers)
        coarse_widths = (bottleneck_width,) + widths[::-1][:-1]
        self.decoder = nn.ModuleList(
            DecoderLevel(c_in, c_skip, c_skip, decoder_block, gn_groups, dense_layers, up_conv)
            for c_in, c_skip in zip(coarse_widths, widths[::-1])
        )
        # ds_heads[k - 1] reads the decoder level at H / 2**k, which has widths[k] channels
        self.ds_heads = nn.ModuleList(nn.Conv2d(widths[k], 2, 1) for k in range(1, self.deep_supervision + 1))

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run the encoder and the bottleneck.

        Returns:
            skips: L maps, ``skips[l]`` of shape (B, widths[l], H / 2**l, W / 2**l);
            bottom: (B, bottleneck_width, H / 2**L, W / 2**L).
        """
        h, w = x.shape[-2:]
        if h % self.downsample_factor or w % self.downsample_factor:
            raise ValueError(
                f"input size {h}x{w} is not divisible by {self.downsample_factor} "
                f"(2 ** number of encoder levels); resize or pad the images"
            )
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
            x = self.pool(x)
        return skips, self.bottleneck(x)

    def decode(self, skips: list[torch.Tensor], bottom: torch.Tensor) -> torch.Tensor:
        """Run the decoder: (skips, bottom) -> features (B, widths[0], H, W)."""
        return self.decode_with_aux(skips, bottom)[0]

    def decode_with_aux(self, skips: list[torch.Tensor], bottom: torch.Tensor
                        ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Like :meth:`decode`, plus the deep-supervision mask logits.

        Returns:
            features (B, widths[0], H, W) and a list of ``deep_supervision`` logits,
            the k-th (k = 1, 2, ...) of shape (B, 2, H / 2**k, W / 2**k).
        """
        x, by_level = bottom, []
        for level, skip in zip(self.decoder, reversed(skips)):
            x = level(x, skip)
            by_level.append(x)
        n = len(self.decoder)
        return x, [head(by_level[n - 1 - k]) for k, head in enumerate(self.ds_heads, start=1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(x))


def aux_outputs(aux: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The deep-supervision logits as output-dict entries ``"seg_ds1"``, ``"seg_ds2"``, ..."""
    return {f"seg_ds{k}": a for k, a in enumerate(aux, start=1)}


class ResUNet(UNetBackbone):
    """MTL-OCA's backbone: :class:`UNetBackbone` with residual blocks throughout.

    Each encoder level is Conv2d + GroupNorm with a residual connection, then
    MaxPool; each decoder level is Upsample + Conv2d + GroupNorm, skip
    concatenation and a residual block. Its output is the pixel representation X
    that feeds both the OCA module and the classification head.

    Args:
        in_channels, widths, bottleneck_width, gn_groups, up_conv, deep_supervision: see
            :class:`UNetBackbone`.

    Shapes:
        (B, in_channels, H, W) -> (B, widths[0], H, W)
    """

    def __init__(self, in_channels: int = 2, widths: Sequence[int] = (16, 32, 64),
                 bottleneck_width: int = 128, gn_groups: int = 8, up_conv: bool = True,
                 deep_supervision: int = 0):
        super().__init__(in_channels, widths, bottleneck_width, gn_groups,
                         encoder_block="residual", decoder_block="residual", up_conv=up_conv,
                         deep_supervision=deep_supervision)
