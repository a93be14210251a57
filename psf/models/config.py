"""The architecture as plain data, stored in model.pt so a checkpoint rebuilds its own networks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

NORMS = ("batch", "group")  # the mapping net's normalization layers (psf.models.blocks.norm_layer)


def default_patch(image_size: int) -> int:
    """The commands' default patch for a model size: 4 from 128 px up, 2 below.

    A latent grid under 32 cells a side is too coarse for thin structures: on the 64-px factory tasks patch 4
    (16 x 16) held the mask autoencoder's ceiling at 0.80-0.98, patch 2 (32 x 32) at 0.99+, and psf's Dice rose
    on all three (benchmarks/results/2026-11-30-byod-baseline-patch2)."""
    return 4 if image_size >= 128 else 2


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the five networks.

    The latent grid is image_size / patch on each side. Client nets work on that grid after a
    space-to-depth of `patch` (cheap and fast on CPUs); the mapping net is a two-level latent U-Net.
    Payload per slice and direction = grid^2 * latent channels * bytes per value.
    """

    image_size: int = 256
    in_channels: int = 1
    num_classes: int = 3
    patch: int = 4
    image_latent: int = 4
    mask_latent: int = 3
    client_width: int = 32
    client_depth: int = 1
    map_width: int = 32
    map_depth: int = 1
    # The mapping net's normalization: "batch" (folded into the convolutions at export) or "group"
    # (what differentially private training needs: psf.train.dp). Older checkpoints lack it: "batch".
    map_norm: str = "batch"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch

    def latent_shape(self, which: str) -> tuple[int, int, int]:
        channels = self.image_latent if which == "image" else self.mask_latent
        return (channels, self.grid, self.grid)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check(self) -> None:
        from psf.errors import UsageError

        if self.image_size % (self.patch * 2) != 0:
            raise UsageError(f"image_size {self.image_size} must be a multiple of 2*patch ({2 * self.patch})")
        if self.map_norm not in NORMS:
            raise UsageError(f"map_norm {self.map_norm!r}: choose one of {', '.join(NORMS)}")
        for name in ("image_latent", "mask_latent", "client_width", "map_width", "patch"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
