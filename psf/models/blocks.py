"""Building blocks shared by the networks. BatchNorm is folded into the convolutions at export.

`norm="group"` swaps BatchNorm for GroupNorm: differentially private training (psf.train.dp) needs each
example's gradient on its own, and BatchNorm mixes the examples of a batch (Opacus refuses it)."""

from __future__ import annotations

import math

from torch import nn


def norm_layer(channels: int, norm: str = "batch") -> nn.Module:
    """BatchNorm2d, or GroupNorm with up to 8 groups (a divisor of `channels`)."""
    if norm == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.BatchNorm2d(channels)


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        norm_layer(c_out, norm),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """Two 3x3 convolutions with an identity skip (He et al., 2016)."""

    def __init__(self, channels: int, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, channels, norm=norm),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            norm_layer(channels, norm),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(x + self.body(x))


def res_stack(channels: int, depth: int, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(*[ResBlock(channels, norm) for _ in range(depth)])
