"""The consortium key: a secret per-position affine map of the latent channels, z' = (Q z + b) / r.

Q is a random orthogonal matrix (times a random channel permutation), b a random offset, r = sqrt(c) +
max|b| so that z' stays inside (-1, 1) like the tanh latents it replaces (the mapping net ends in tanh).
One transform for image latents (applied after the image encoder, before the latent leaves the client)
and one for mask latents (the server's map net learns to produce keyed mask latents; the client undoes
the key before the mask decoder). The server only ever sees keyed latents and never the key.

In the exported graphs each transform is one 1x1 convolution on the latent grid (c x c weights per
position: about 0.01 % of the encoder's or decoder's FLOPs). The key file is client-only (written 0600);
bundles and checkpoints record only its id.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from psf.errors import PsfError, UsageError

FORMAT = "psf-key/1"


@dataclass(frozen=True)
class ChannelKey:
    """z' = (matrix @ z + offset) / scale over the channel axis, at every latent position."""

    matrix: np.ndarray  # (c, c) orthogonal
    offset: np.ndarray  # (c,)
    scale: float

    @classmethod
    def random(cls, channels: int, rng: np.random.Generator, permute: bool = True) -> "ChannelKey":
        q, r = np.linalg.qr(rng.standard_normal((channels, channels)))
        q = q * np.sign(np.diag(r))  # Haar-distributed orthogonal matrix
        if permute:
            q = q[rng.permutation(channels)]
        offset = rng.uniform(-0.5, 0.5, channels)
        return cls(q, offset, float(np.sqrt(channels) + np.abs(offset).max()))

    def forward_module(self) -> nn.Conv2d:
        c = len(self.offset)
        conv = nn.Conv2d(c, c, 1)
        conv.weight.data = torch.tensor(self.matrix / self.scale, dtype=torch.float32).reshape(c, c, 1, 1)
        conv.bias.data = torch.tensor(self.offset / self.scale, dtype=torch.float32)
        return conv.requires_grad_(False)

    def inverse_module(self) -> nn.Conv2d:
        """z = Q^T (r z' - b)."""
        c = len(self.offset)
        conv = nn.Conv2d(c, c, 1)
        conv.weight.data = torch.tensor(self.matrix.T * self.scale, dtype=torch.float32).reshape(c, c, 1, 1)
        conv.bias.data = torch.tensor(-(self.matrix.T @ self.offset), dtype=torch.float32)
        return conv.requires_grad_(False)

    def to_dict(self) -> dict:
        return {"matrix": self.matrix.tolist(), "offset": self.offset.tolist(), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict) -> "ChannelKey":
        matrix, offset = np.asarray(data["matrix"], float), np.asarray(data["offset"], float)
        if matrix.shape != (len(offset), len(offset)) or not np.allclose(matrix @ matrix.T, np.eye(len(offset)), atol=1e-6):
            raise ValueError("matrix is not orthogonal or does not match the offset")
        return cls(matrix, offset, float(data["scale"]))


@dataclass(frozen=True)
class ConsortiumKey:
    image: ChannelKey
    mask: ChannelKey

    @classmethod
    def generate(cls, image_channels: int, mask_channels: int, permute: bool = True, seed: int | None = None) -> "ConsortiumKey":
        """A fresh key from the OS's secure random source (or `seed`, for tests and audits only)."""
        rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)
        return cls(ChannelKey.random(image_channels, rng, permute), ChannelKey.random(mask_channels, rng, permute))

    @property
    def key_id(self) -> str:
        """sha256 of the key's content, 16 hex digits: names the key in manifests without revealing it."""
        return hashlib.sha256(json.dumps(self._content(), sort_keys=True).encode()).hexdigest()[:16]

    def _content(self) -> dict:
        return {"image": self.image.to_dict(), "mask": self.mask.to_dict()}

    def save(self, path: Path) -> Path:
        """Write the key file readable by its owner only (0600), atomically."""
        from psf.io.atomic import atomic_path

        text = json.dumps({"format": FORMAT, "key_id": self.key_id, **self._content()}, indent=1) + "\n"
        with atomic_path(Path(path), mode=0o600) as tmp:  # private from its first byte (mkstemp is 0600)
            tmp.write_text(text)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "ConsortiumKey":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            key = cls(ChannelKey.from_dict(data["image"]), ChannelKey.from_dict(data["mask"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PsfError(f"{path}: not a usable consortium key ({exc}); make one with: psf key new {path}") from exc
        if data.get("key_id") != key.key_id:
            raise PsfError(f"{path}: its key_id does not match its content (edited or damaged); use an intact copy")
        return key

    def check_fits(self, image_channels: int, mask_channels: int) -> None:
        got = (len(self.image.offset), len(self.mask.offset))
        if got != (image_channels, mask_channels):
            raise UsageError(f"the key is for {got[0]} image / {got[1]} mask latent channels, the model has "
                             f"{image_channels} / {mask_channels}; make one with: psf key new KEY.json "
                             f"--image-channels {image_channels} --mask-channels {mask_channels}")


def require_key(key: ConsortiumKey | None, key_id: str | None, what: str) -> None:
    """A model trained with a key needs that key (and a model without one takes none)."""
    if key_id and key is None:
        raise UsageError(f"{what} was trained with consortium key {key_id}; pass --key KEY.json (the client's key file)")
    if key is not None and key_id != key.key_id:
        raise UsageError(f"{what} was trained with key {key_id or 'none'}, the --key file is {key.key_id}; "
                         "use the key the model was trained with")
