"""PSNR and SSIM of reconstructions over the real (unpadded) pixels, and Dice of inverted masks.

SSIM: Gaussian window (11, sigma 1.5), K1 0.01, K2 0.03. Both images are first mapped by one affine per
channel that takes [lo, hi] to [0, 1], with lo, hi the wider of [0, 1] and the true images' range over
the valid pixels of the whole array passed in (one split at a time in the audit): scans normalized to [0, 1] (MR, 8-bit) are measured as they are, z-scored CT on its
own range instead of being clipped to [0, 1]. The SSIM map is averaged over the valid pixels only, so the
zero padding around a slice, which every method reproduces, does not inflate the score.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_psnr(recon: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice SSIM and PSNR (dB), averaged over channels. recon, truth: (n, C, S, S), put on the truth's
    range (module docstring; recon is clipped to it); valid: (n, S, S)."""
    lo, hi = _channel_range(truth, valid)
    x = torch.from_numpy(np.clip((recon - lo) / (hi - lo), 0, 1).astype(np.float32))
    y = torch.from_numpy(((truth - lo) / (hi - lo)).astype(np.float32))
    channels = x.shape[1]
    w = _gaussian_window().expand(channels, 1, -1, -1).contiguous()
    pad = w.shape[-1] // 2

    def blur(t: torch.Tensor) -> torch.Tensor:  # each channel on its own
        return F.conv2d(t, w, padding=pad, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    m = torch.from_numpy(valid.astype(np.float32))[:, None]
    pixels = (m.sum((1, 2, 3)) * channels).clamp(min=1)
    ssim = (ssim_map * m).sum((1, 2, 3)) / pixels
    mse = (((x - y) ** 2) * m).sum((1, 2, 3)) / pixels
    psnr = 10 * torch.log10(1.0 / mse.clamp(min=1e-10))
    return ssim.numpy(), psnr.numpy()


def _channel_range(truth: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the wider of [0, 1] and the valid pixels' [min, max], shaped (1, C, 1, 1) for broadcasting."""
    channels = truth.shape[1]
    pixels = np.moveaxis(truth, 1, 0)[:, valid] if valid.any() else np.zeros((channels, 1), truth.dtype)
    lo = np.minimum(pixels.min(axis=1), 0.0).reshape(1, channels, 1, 1)
    hi = np.maximum(pixels.max(axis=1), 1.0).reshape(1, channels, 1, 1)
    return lo, hi


def summary(recon: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> dict:
    ssim, psnr = ssim_psnr(recon, truth, valid)
    return {"ssim": round(float(ssim.mean()), 4), "psnr": round(float(psnr.mean()), 2)}


def mean_foreground_dice(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray, num_classes: int) -> float:
    """Mean Dice over the foreground classes (1..C-1), pooled over all slices' valid pixels."""
    from psf.metrics import confusion_counts, dice_iou

    dice, _ = dice_iou(confusion_counts(pred[valid], truth[valid], num_classes))
    return round(float(np.mean(dice[1:])), 4)
