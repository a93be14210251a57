"""Encoded-data augmentation: the server's augmentations, on the latent grid (what it holds) only.

The latent is treated as a grid of feature vectors ("tokens"). Geometric moves act on z_x and z_y
together, so each pair stays consistent; noise and token dropout act on the input z_x only (the target
stays what the client sent); mixing blends two pairs' z_x and z_y with the same weight. A flip or rot90
of the latent grid is not the latent of the flipped slice (the encoder is not equivariant), so whether
they help is an empirical question: `benchmarks/latent_augment_ablation.py` measures each one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from psf.train.augment import random_crop


@dataclass(frozen=True)
class LatentAugment:
    shift: bool = True            # same random crop window of z_x and z_y (whole latent pixels)
    flip: bool = False            # same left-right / up-down flips of both grids
    rot90: bool = False           # same quarter turn of both grids
    token_dropout: float = 0.0    # share of z_x grid cells set to zero
    mix: float = 0.0              # probability of blending a pair with another (weight ~ Beta(0.4, 0.4))
    noise: float = 0.0            # Gaussian sigma added to z_x

    @classmethod
    def from_names(cls, names: str) -> "LatentAugment":
        """'shift,flip,noise' -> those on (with default strengths), the rest off; 'none' -> nothing."""
        chosen = {n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"}
        known = {f.name for f in fields(cls)}
        if chosen - known:
            from psf.errors import UsageError

            raise UsageError(f"unknown latent augmentation(s) {sorted(chosen - known)}; choose from {sorted(known)}")
        strength = {"token_dropout": 0.1, "mix": 0.3, "noise": 0.03}
        return cls(**{name: (strength.get(name, True) if name in chosen else (0.0 if name in strength else False))
                      for name in known})

    def names(self) -> str:
        on = [f.name for f in fields(self) if getattr(self, f.name)]
        return ",".join(on) or "none"

    def __call__(self, z_x: torch.Tensor, z_y: torch.Tensor, gen: torch.Generator, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = z_x.shape[0]
        if self.shift:
            z_x, z_y = random_crop([z_x, z_y], crop, gen)
        if self.flip:
            flips = torch.rand(2, generator=gen) < 0.5
            dims = [d for d, f in zip((-1, -2), flips) if f]
            if dims:
                z_x, z_y = z_x.flip(dims), z_y.flip(dims)
        if self.rot90:
            k = int(torch.randint(0, 4, (1,), generator=gen))
            z_x, z_y = torch.rot90(z_x, k, (-2, -1)), torch.rot90(z_y, k, (-2, -1))
        if self.mix:
            chosen = torch.rand(n, generator=gen) < self.mix
            if chosen.any():
                weight = torch.distributions.Beta(0.4, 0.4).sample((n,)).clamp(0.5, 1.0)  # keep the pair dominant
                weight = torch.where(chosen, weight, torch.ones(n)).view(n, 1, 1, 1)
                partner = torch.randperm(n, generator=gen)
                z_x = weight * z_x + (1 - weight) * z_x[partner]
                z_y = weight * z_y + (1 - weight) * z_y[partner]
        if self.token_dropout:
            keep = torch.rand(n, 1, *z_x.shape[-2:], generator=gen) >= self.token_dropout
            z_x = z_x * keep
        if self.noise:
            z_x = z_x + self.noise * torch.randn(z_x.shape, generator=gen)
        return z_x, z_y
