"""Known-plaintext inversion: an attacker holding k leaked (slice, latent) pairs trains a network that
maps latents back to images (or masks), then applies it to latents it was never given.

The attacker is strong: it knows the client's decoder architecture and trains one of its own from
scratch on the leaked pairs, for a fixed time budget.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from psf.models.autoencoders import GridDecoder
from psf.models.config import ModelConfig
from psf.train.loop import Budget, cosine_lr, run_loop
from psf.train.stages import dice_ce_loss


def train_inverter(config: ModelConfig, latents: torch.Tensor, targets: torch.Tensor, seconds: float, kind: str,
                   gen: torch.Generator, quiet: bool = True, label: str = "") -> GridDecoder:
    """kind "image": targets (n, C, S, S) in [0, 1], L1 + MSE; kind "mask": targets (n, S, S) classes, Dice + CE."""
    c_out = config.in_channels if kind == "image" else config.num_classes
    net = GridDecoder(latents.shape[1], c_out, config.client_width, config.client_depth, config.patch)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    batch = max(1, min(16, len(latents)))

    def step(idx: torch.Tensor, done: float) -> float:
        cosine_lr(opt, 3e-3, done)
        out = net(latents[idx])
        if kind == "image":
            loss = F.l1_loss(out, targets[idx]) + F.mse_loss(out, targets[idx])
        else:
            loss = dice_ce_loss(out, targets[idx].long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    run_loop(label or f"attack: invert {kind} latents (k={len(latents)})", step, len(latents), batch,
             Budget(seconds=seconds), gen, quiet)
    return net.eval()


@torch.no_grad()
def apply(net: torch.nn.Module, latents: torch.Tensor, kind: str, batch_size: int = 32) -> np.ndarray:
    """Images (n, C, S, S) or class maps (n, S, S) from latents."""
    out = [net(latents[i : i + batch_size]) for i in range(0, len(latents), batch_size)]
    out = torch.cat(out)
    return out.numpy() if kind == "image" else out.argmax(1).numpy().astype(np.uint8)
