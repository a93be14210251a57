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
        lab = label_colour_index(labels[k])
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


def label_colour_index(labels: np.ndarray) -> np.ndarray:
    """Row of COLOURS per label: 0 stays 0 (transparent); labels 1.. cycle through the other colours, so no label
    is ever drawn like background, whatever the number of labels."""
    labels = labels.astype(int)
    return np.where(labels > 0, 1 + (labels - 1) % (len(COLOURS) - 1), 0)


def legend(names: list[str], width: int) -> np.ndarray:
    """(H, width, 3) uint8 strip: a colour swatch and the name of every label but background (labels 1..)."""
    from PIL import Image, ImageDraw

    row_height, per_row = 14, max(1, width // 110)
    rows = -(-max(1, len(names) - 1) // per_row)
    strip = Image.new("RGB", (width, rows * row_height + 4), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for n, name in enumerate(names[1:]):
        r, c = divmod(n, per_row)
        x, y = 4 + c * (width // per_row), 2 + r * row_height
        colour = tuple(int(v) for v in COLOURS[label_colour_index(np.array(n + 1))])
        draw.rectangle([x, y + 2, x + 9, y + 11], fill=colour)
        draw.text((x + 13, y), f"{n + 1} {name}"[:18], fill=(255, 255, 255))
    return np.asarray(strip)


def write_overlay(path: Path, scan_pixels: np.ndarray, mask: np.ndarray, axis: int, volume: bool,
                  labels: list[str] | None = None) -> Path:
    """The montage, with a legend strip below it naming each label (the bundle's labels) when `labels` is given."""
    from PIL import Image

    picture = overlay_montage(scan_pixels, mask, axis, volume)
    if labels and len(labels) > 1:
        picture = np.concatenate([picture, legend(labels, picture.shape[1])], axis=0)
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return path
