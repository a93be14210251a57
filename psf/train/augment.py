"""Image-space augmentations (client side, before encoding). The server's own, on encoded pairs, are in
psf.train.latent_augment.

A convolutional encoder is not flip-equivariant, so flips and geometry of the slice live here, before
the encoder; the server can only move the latent grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def geometric(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, max_rot_deg: float = 10.0,
              max_scale: float = 0.1, max_shift: float = 0.06,
              background: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random left-right flip, rotation, scale and shift, applied identically to images and one-hot masks.
    Outside the field of view an image channel takes its `background` value (default 0; CT's air is below 0)."""
    n = images.shape[0]
    u = torch.rand(n, 5, generator=gen)
    angle = (u[:, 0] * 2 - 1) * math.radians(max_rot_deg)
    scale = 1 + (u[:, 1] * 2 - 1) * max_scale
    flip = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    shift = (u[:, 3:5] * 2 - 1) * max_shift * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3)
    # affine_grid's second row is the row axis (voxel axis i, left-right): `flip` mirrors it.
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos * flip
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    bg = torch.zeros(1, images.shape[1], 1, 1) if background is None else torch.tensor(background, dtype=images.dtype).reshape(1, -1, 1, 1)
    images = F.grid_sample(images - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg
    masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    masks[:, :1] += 1 - masks.sum(1, keepdim=True)  # outside the field of view is background
    return images, masks


def intensity(images: torch.Tensor, gen: torch.Generator, bounded: bool = True) -> torch.Tensor:
    """Scanner-like intensity changes after normalization: gamma 0.7..1.4, contrast 0.85..1.15, offset +-0.05.

    `bounded=False` (z-scored CT): contrast 0.85..1.15 and offset +-0.1 standard deviations, no gamma or clip."""
    n = images.shape[0]
    u = torch.rand(n, 3, 1, 1, 1, generator=gen)
    gamma = torch.exp((u[:, 0] * 2 - 1) * math.log(1.4))
    contrast = 1 + (u[:, 1] * 2 - 1) * 0.15
    offset = (u[:, 2] * 2 - 1) * 0.05
    if not bounded:
        return images * contrast + 2 * offset
    out = images.clamp(0, 1) ** gamma
    return ((out - 0.5) * contrast + 0.5 + offset).clamp(0, 1)


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(n, S, S) integer labels -> (n, classes, S, S) float."""
    return F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()


def crop_window(full: int, size: int, gen: torch.Generator, multiple: int = 1) -> tuple[int, int, int]:
    """A random size x size window (top, left, size) of a full x full slice, offsets a multiple of `multiple`."""
    if size >= full:
        return 0, 0, full
    top, left = (int(v) * multiple for v in torch.randint(0, (full - size) // multiple + 1, (2,), generator=gen))
    return top, left, size


def random_crop(tensors: list[torch.Tensor], size: int, gen: torch.Generator, multiple: int = 1) -> list[torch.Tensor]:
    """Crop the same size x size window (offset a multiple of `multiple`) out of every tensor's last two dims."""
    top, left, size = crop_window(tensors[0].shape[-1], size, gen, multiple)
    return [t[..., top : top + size, left : left + size] for t in tensors]
