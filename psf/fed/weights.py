"""The hospitals' shared autoencoders as one flat float vector (what is encrypted and summed).

Only floating-point tensors are shared; integer buffers (BatchNorm's batch counter) stay each
hospital's own, as in psf.train's in-process averaging before this package replaced it.
"""

from __future__ import annotations

import numpy as np
import torch

CLIENT_NETWORKS = ("image_encoder", "image_decoder", "mask_encoder", "mask_decoder")


def _shared_tensors(nets) -> list[torch.Tensor]:
    return [t for name in CLIENT_NETWORKS for t in getattr(nets, name).state_dict().values() if t.is_floating_point()]


def flatten(nets) -> np.ndarray:
    """float64 vector of every shared tensor, in a fixed order (network, then state-dict order)."""
    return np.concatenate([t.detach().reshape(-1).double().numpy() for t in _shared_tensors(nets)])


def load_flat(nets, vector: np.ndarray) -> None:
    """Copy `vector` back into the networks in place (optimizers keep pointing at the same tensors)."""
    tensors = _shared_tensors(nets)
    expected = sum(t.numel() for t in tensors)
    if vector.shape != (expected,):
        raise ValueError(f"shared weights: got {vector.shape[0]} values, the networks have {expected}")
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(torch.from_numpy(vector[offset : offset + t.numel()]).reshape(t.shape).to(t.dtype))
            offset += t.numel()
