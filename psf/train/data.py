"""Slices and labels of a data set folder (as `psf data mni152` writes it), read with psf's own readers.

Layout: DIR/{train,val,test}/images/X.nii.gz and DIR/{train,val,test}/labels/X.nii.gz (same names).
Images go through the same preprocessing as inference (psf.pipeline.preprocess), so training and
deployment see identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psf.errors import PsfError
from psf.io import find_scans, read_scan
from psf.pipeline.preprocess import fit_slices, normalize, plan_fit, to_slices

SPLITS = ("train", "val", "test")


@dataclass
class SliceSet:
    """images: (n, 1, S, S) float32 in [0, 1]; labels: (n, S, S) uint8; valid: (n, S, S) bool (not padding).

    positions: (n,) world coordinate (mm) of each slice along the slice axis' direction, or None when a
    scan has no affine; psf-audit uses it to compare members and non-members over the same anatomy.
    volumes: (n,) which of the split's scans each slice came from (psf-audit reports membership per scan)."""

    images: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    positions: np.ndarray | None = None
    volumes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def load_split(root: Path, split: str, size: int, normalization: dict, axis: int = 2) -> SliceSet:
    images_dir, labels_dir = root / split / "images", root / split / "labels"
    if not images_dir.is_dir():
        raise PsfError(f"{images_dir} does not exist; build a data set with: psf data mni152 {root}")
    images, labels, valid, positions = [], [], [], []
    for source in find_scans([images_dir]):
        path = source.path
        label_path = labels_dir / path.name
        if not label_path.is_file():
            raise PsfError(f"{path} has no label file {label_path}")
        scan = read_scan(path)
        volume = scan.pixels
        label = read_scan(label_path).pixels
        if label.shape != volume.shape:
            raise PsfError(f"{label_path} has shape {label.shape}, its image {volume.shape}")
        img_slices = to_slices(normalize(volume, normalization), axis)
        fit = plan_fit(img_slices.shape[1:], size)
        if fit.resized:
            raise PsfError(f"{path}: slices {fit.source} are larger than the model size {size}; pick a larger --image-size")
        images.append(fit_slices(img_slices, fit))
        lab = fit_slices(to_slices(label, axis), fit)[:, 0]
        labels.append(np.rint(lab).astype(np.uint8))
        valid.append(fit_slices(np.ones_like(img_slices), fit)[:, 0] > 0.5)
        positions.append(slice_positions(scan.geometry.affine, volume.shape[axis], axis))
    if not images:
        raise PsfError(f"no scans in {images_dir}")
    known = all(p is not None for p in positions)
    return SliceSet(np.concatenate(images), np.concatenate(labels), np.concatenate(valid),
                    np.concatenate(positions) if known else None,
                    np.concatenate([np.full(len(i), v) for v, i in enumerate(images)]))


def slice_positions(affine: np.ndarray | None, count: int, axis: int = 2) -> np.ndarray | None:
    """World position (mm) of slices 0..count-1 along the slice axis' own direction; None without an affine."""
    if affine is None:
        return None
    step = np.asarray(affine, float)[:3, axis]
    normal = step / np.linalg.norm(step)
    return (np.asarray(affine, float)[:3, 3] @ normal) + np.arange(count) * (step @ normal)
