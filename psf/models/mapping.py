"""Server-side mapping network: encoded image -> encoded mask, a two-level U-Net on the latent grid."""

from __future__ import annotations

import torch
from torch import nn

from psf.models.blocks import conv_bn_relu, res_stack
from psf.models.config import ModelConfig


class MappingNet(nn.Module):
    """[N, image_latent, g, g] -> [N, mask_latent, g, g] in (-1, 1); g must be even."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w, norm = cfg.map_width, cfg.map_norm
        self.stem = nn.Sequential(conv_bn_relu(cfg.image_latent, w, norm=norm), res_stack(w, cfg.map_depth, norm))
        self.down = nn.Sequential(conv_bn_relu(w, 2 * w, stride=2, norm=norm), res_stack(2 * w, cfg.map_depth, norm))
        # Up by depth-to-space: a 1x1 conv makes 4 sub-pixel maps per channel, then pixel shuffle.
        self.up = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 1), nn.PixelShuffle(2))
        self.head = nn.Sequential(conv_bn_relu(w, w, norm=norm), nn.Conv2d(w, cfg.mask_latent, 1), nn.Tanh())

    def forward(self, z_image: torch.Tensor) -> torch.Tensor:
        skip = self.stem(z_image)
        return self.head(skip + self.up(self.down(skip)))
