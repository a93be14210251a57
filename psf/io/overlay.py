"""A PNG montage a person can look at: evenly spaced slices of the scan in grey, labels in colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.io.atomic import atomic_path

# Label -> RGB; 0 (background) is left transparent.
COLOURS = np.array([[0, 0, 0], [255, 170, 0], [0, 160, 255], [230, 60, 60], [120, 220, 90], [200, 90, 220]], np.uint8)


def overlay_montage(scan_pixels: np.ndarray, mask: np.ndarray, axis: int, volume: bool, tiles: int = 12,
                    alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8: up to `tiles` slices along `axis` (those with labels first spread evenly), grey
    scan under coloured labels. Volumes are shown with their second voxel axis pointing up."""
    slices = np.moveaxis(scan_pixels, axis, 0)
    labels = np.moveaxis(mask, axis, 0)
    labelled = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    pool = labelled if len(labelled) else np.arange(len(slices))
    picks = pool[np.linspace(0, len(pool) - 1, min(tiles, len(pool))).astype(int)]
    lo, hi = np.percentile(scan_pixels, [0.5, 99.5])
    tiles_rgb = []
    for k in picks:
        grey = np.clip((slices[k] - lo) / max(hi - lo, 1e-6), 0, 1)
        lab = labels[k].astype(int) % len(COLOURS)
        if volume:
            grey, lab = grey.T[::-1], lab.T[::-1]
        rgb = np.repeat(grey[..., None] * 255, 3, axis=2)
        colour = COLOURS[lab].astype(np.float32)
        on = lab > 0
        rgb[on] = (1 - alpha) * rgb[on] + alpha * colour[on]
        tiles_rgb.append(rgb.astype(np.uint8))
    columns = min(4, len(tiles_rgb))
    rows = -(-len(tiles_rgb) // columns)
    h, w = tiles_rgb[0].shape[:2]
    canvas = np.zeros((rows * h, columns * w, 3), np.uint8)
    for n, tile in enumerate(tiles_rgb):
        r, c = divmod(n, columns)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return canvas


def write_overlay(path: Path, scan_pixels: np.ndarray, mask: np.ndarray, axis: int, volume: bool) -> Path:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(overlay_montage(scan_pixels, mask, axis, volume)).save(tmp, format="PNG")
    return path
