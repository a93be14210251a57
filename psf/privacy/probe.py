"""Encoded-data analysis: what a *linear* map recovers from the latent, and each latent channel's statistics.

The probe maps the latent vectors of a 3x3 neighbourhood of grid cells (plus a bias) to the patch of
pixels under the centre cell (ridge regression, closed form), fitted on training pairs and scored on
test latents. A high score means the latent is close to a re-arrangement of the pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _features(z: torch.Tensor) -> np.ndarray:
    """(n, C, g, g) -> (n*g*g, 9C + 1): each cell with its 8 neighbours (zero-padded) and a bias."""
    n, c, g, _ = z.shape
    cells = F.unfold(z, kernel_size=3, padding=1)  # (n, 9C, g*g)
    x = cells.permute(0, 2, 1).reshape(n * g * g, 9 * c).numpy().astype(np.float64)
    return np.hstack([x, np.ones((len(x), 1))])


def _patches(target: torch.Tensor, patch: int) -> np.ndarray:
    """(n, K, S, S) -> (n*g*g, K*patch*patch), cells in the same order as _features."""
    n = target.shape[0]
    cols = F.unfold(target, kernel_size=patch, stride=patch)  # (n, K*p*p, g*g)
    return cols.permute(0, 2, 1).reshape(n * cols.shape[2], cols.shape[1]).numpy().astype(np.float64)


def fit_probe(z: torch.Tensor, target: torch.Tensor, patch: int, ridge: float = 1e-3) -> np.ndarray:
    x, y = _features(z), _patches(target, patch)
    gram = x.T @ x
    gram += ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    return np.linalg.solve(gram, x.T @ y)


def apply_probe(weights: np.ndarray, z: torch.Tensor, patch: int, channels: int) -> np.ndarray:
    """(n, C, g, g) latents -> (n, channels, S, S) linear reconstruction."""
    n, _, g, _ = z.shape
    cols = (_features(z) @ weights).reshape(n, g * g, channels * patch * patch).transpose(0, 2, 1)
    return F.fold(torch.from_numpy(cols.astype(np.float32)), output_size=(g * patch, g * patch),
                  kernel_size=patch, stride=patch).numpy()


def channel_statistics(z: torch.Tensor, target: torch.Tensor, patch: int) -> list[dict]:
    """Per latent channel: mean, std, share of saturated values (|z| > 0.99), and the correlation with the
    mean of the target under each cell (image intensity, or foreground share for masks)."""
    cell_mean = F.avg_pool2d(target.float(), patch)  # (n, K, g, g)
    reference = cell_mean[:, 0] if cell_mean.shape[1] == 1 else 1 - cell_mean[:, 0]
    stats = []
    for c in range(z.shape[1]):
        values = z[:, c].flatten().numpy()
        corr = np.corrcoef(values, reference.flatten().numpy())[0, 1]
        stats.append({"channel": c, "mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4),
                      "saturated": round(float((np.abs(values) > 0.99).mean()), 4),
                      "corr_with_content": round(float(np.nan_to_num(corr)), 4)})
    return stats
