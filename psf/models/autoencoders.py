"""Client-side networks: image encoder/decoder and mask encoder/decoder (all fully convolutional).

Encoders: space-to-depth by `patch`, a conv stack on the latent grid, a 1x1 conv to the latent
channels, tanh (bounded latents survive fp16/int8 on the wire). Decoders mirror them and end in a
depth-to-space back to full resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from psf.models.blocks import conv_bn_relu, res_stack
from psf.models.config import ModelConfig


class GridEncoder(nn.Module):
    """[N, c_in, H, W] -> [N, latent, H/patch, W/patch] in (-1, 1)."""

    def __init__(self, c_in: int, latent: int, width: int, depth: int, patch: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.PixelUnshuffle(patch),
            conv_bn_relu(c_in * patch * patch, width),
            res_stack(width, depth),
            nn.Conv2d(width, latent, 1),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GridDecoder(nn.Module):
    """[N, latent, h, w] -> [N, c_out, h*patch, w*patch] (raw values: image or class logits)."""

    def __init__(self, latent: int, c_out: int, width: int, depth: int, patch: int):
        super().__init__()
        self.net = nn.Sequential(
            conv_bn_relu(latent, width),
            res_stack(width, depth),
            nn.Conv2d(width, c_out * patch * patch, 1),
            nn.PixelShuffle(patch),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def image_encoder(cfg: ModelConfig) -> GridEncoder:
    return GridEncoder(cfg.in_channels, cfg.image_latent, cfg.client_width, cfg.client_depth, cfg.patch)


def image_decoder(cfg: ModelConfig) -> GridDecoder:
    return GridDecoder(cfg.image_latent, cfg.in_channels, cfg.client_width, cfg.client_depth, cfg.patch)


def mask_encoder(cfg: ModelConfig) -> GridEncoder:
    """Takes one-hot masks [N, num_classes, H, W]."""
    return GridEncoder(cfg.num_classes, cfg.mask_latent, cfg.client_width, cfg.client_depth, cfg.patch)


def mask_decoder(cfg: ModelConfig) -> GridDecoder:
    """Returns class logits [N, num_classes, H, W]."""
    return GridDecoder(cfg.mask_latent, cfg.num_classes, cfg.client_width, cfg.client_depth, cfg.patch)
