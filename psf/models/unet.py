"""A plain 2D U-Net on raw images: the baseline that says what privacy costs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from psf.models.blocks import conv_bn_relu


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out))


class UNet(nn.Module):
    """Ronneberger et al. (2015) with BatchNorm: `levels` resolutions, `width` channels at the top."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3, width: int = 16, levels: int = 4):
        super().__init__()
        widths = [width * 2**i for i in range(levels)]
        self.down = nn.ModuleList([double_conv(in_channels, widths[0])] +
                                  [double_conv(widths[i - 1], widths[i]) for i in range(1, levels)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2) for i in range(levels - 1, 0, -1)])
        self.merge = nn.ModuleList([double_conv(2 * widths[i - 1], widths[i - 1]) for i in range(levels - 1, 0, -1)])
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)
