"""Slices and labels of a data set folder (psf's layout, see psf.data.dataset), read with psf's own readers.

Layout: DIR/{train,val,test}/images/CASE.EXT (or CASE_0000.EXT, CASE_0001.EXT, ... per channel) and
DIR/{train,val,test}/labels/CASE.EXT; DIR/dataset.json names the labels, channels and modality (a folder
without one is the MNI152 demo). Images go through the same preprocessing as inference
(psf.pipeline.preprocess), so training and deployment see identical inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psf.errors import PsfError
from psf.io import find_scans, read_scan
from psf.pipeline.preprocess import (
    DEFAULT_NORMALIZATION,
    background_value,
    channel_specs,
    fit_slices,
    normalize_channels,
    plan_fit,
    to_channel_slices,
    to_slices,
)

SPLITS = ("train", "val", "test")
# Foreground voxels sampled per channel for CT statistics (nnU-Net samples 10^4 per case; we take more, cheaply).
CT_SAMPLES = 2_000_000


@dataclass
class SliceSet:
    """images: (n, C, S, S) float32 (in [0, 1] except CT, which is z-scored); labels: (n, S, S) uint8;
    valid: (n, S, S) bool (not padding).

    positions: (n,) world coordinate (mm) of each slice along the slice axis' direction, or None when a
    scan has no affine; psf-audit uses it to compare members and non-members over the same anatomy.
    volumes: (n,) which of the split's scans each slice came from (psf-audit reports membership per scan).
    cases: per scan, (name, voxel size of its slices' (slice, row, col) axes, unit): the per-case evaluation report."""

    images: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    positions: np.ndarray | None = None
    volumes: np.ndarray | None = None
    cases: list | None = None

    def __len__(self) -> int:
        return len(self.images)


def dataset_info(root: Path):
    """The data set's DatasetInfo (psf.data.dataset): labels, channels, modality, cases."""
    from psf.data.dataset import load

    return load(root)


def _has_format(root: Path) -> bool:
    try:
        return "format" in json.loads((Path(root) / "dataset.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def split_cases(root: Path, split: str, info=None) -> list[tuple[list[Path], Path]]:
    """(image files in channel order, label file) of every case of a split. A folder without a psf-dataset/1
    dataset.json is read as before it had one: every scan in SPLIT/images, its label of the same name."""
    root = Path(root)
    images_dir, labels_dir = root / split / "images", root / split / "labels"
    if not images_dir.is_dir():
        raise PsfError(f"{images_dir} does not exist; build a data set with: psf data mni152 {root} "
                       f"(or psf data import SRC {root})")
    if info is None or not _has_format(root):
        return [([s.path], labels_dir / s.path.name) for s in find_scans([images_dir])]
    return [(info.image_files(split, case), info.label_file(split, case)) for case in info.cases.get(split, [])]


def _read_case(files: list[Path], label_path: Path, num_labels: int) -> tuple[np.ndarray, np.ndarray, object]:
    """(C, i, j, k) image channels, (i, j, k) labels, the first channel's Scan (geometry)."""
    for path in [*files, label_path]:
        if not path.is_file():
            raise PsfError(f"{files[0]}: its file {path} is missing; rebuild the data set with psf data import")
    scans = [read_scan(p) for p in files]
    label = read_scan(label_path).pixels
    for path, scan in zip(files, scans):
        if scan.pixels.shape != label.shape:
            raise PsfError(f"{label_path} has shape {label.shape}, its image {path} {scan.pixels.shape}")
    label = np.rint(label)
    if label.min() < 0 or label.max() >= num_labels:
        raise PsfError(f"{label_path}: label values {int(label.min())}..{int(label.max())}, the data set declares "
                       f"{num_labels} labels (0..{num_labels - 1}); fix dataset.json's labels or the file")
    return np.stack([s.pixels for s in scans]), label.astype(np.uint8), scans[0]


def fit_normalization(root: Path, info) -> dict | list:
    """Normalization per the data set's modality (DATASET.md): one spec, or a list of one per channel.

    MR / other: per-scan percentiles; US / XR: the 8-bit window; CT: the training split's foreground (label > 0)
    0.5/99.5 percentiles, and the mean/std of the clipped foreground (nnU-Net's CT scheme), so psf-infer
    applies the same fixed numbers to every scan."""
    channels = len(info.channels)
    if info.modality in ("US", "XR"):
        specs = [{"method": "window", "low": 0.0, "high": 255.0}] * channels
    elif info.modality == "CT":
        specs = _ct_statistics(root, info)
    else:
        specs = [dict(DEFAULT_NORMALIZATION)] * channels
    return specs[0] if channels == 1 else specs


def _ct_statistics(root: Path, info) -> list[dict]:
    cases = split_cases(root, "train", info)
    if not cases:
        raise PsfError(f"{root}: no training cases to take CT statistics from")
    per_case = max(1, CT_SAMPLES // len(cases))
    samples: list[list[np.ndarray]] = [[] for _ in info.channels]
    for files, label_path in cases:
        image, label, _ = _read_case(files, label_path, len(info.labels))
        mask = label > 0
        if not mask.any():
            continue
        for c in range(len(info.channels)):
            values = image[c][mask]
            samples[c].append(values[:: max(1, values.size // per_case)].astype(np.float64))
    specs = []
    for c, parts in enumerate(samples):
        if not parts:
            raise PsfError(f"{root}: no foreground (label > 0) in any training case; CT statistics need some")
        values = np.concatenate(parts)
        lo, hi = np.percentile(values, [0.5, 99.5])
        clipped = np.clip(values, lo, hi)
        specs.append({"method": "ct", "clip": [round(float(lo), 4), round(float(hi), 4)],
                      "mean": round(float(clipped.mean()), 4), "std": round(float(max(clipped.std(), 1e-3)), 4)})
    return specs


def load_split(root: Path, split: str, size: int, normalization: dict | list, axis: int = 2, info=None) -> SliceSet:
    """Every case of a split as model-ready slices in memory (same preprocessing as psf-infer). psf-train reads
    its data through psf.train.cache instead, which keeps the slices on disk."""
    parts = list(case_slices(root, split, size, normalization, axis, info))
    if not parts:
        raise PsfError(f"no cases in {Path(root) / split / 'images'}")
    positions = [p.positions for p in parts]
    known = all(p is not None for p in positions)
    return SliceSet(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                    np.concatenate([p.valid for p in parts]), np.concatenate(positions) if known else None,
                    np.concatenate([np.full(len(p.images), v) for v, p in enumerate(parts)]), [p.case for p in parts])


@dataclass
class CaseSlices:
    """One case's model-ready slices: images (k, C, S, S), labels (k, S, S), valid (k, S, S), positions (k,) or
    None, and `case` = (name, voxel size of (slice, row, col), unit)."""

    images: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    positions: np.ndarray | None
    case: tuple


def case_slices(root: Path, split: str, size: int, normalization: dict | list, axis: int = 2, info=None):
    """Yield CaseSlices for every case of a split, one case in memory at a time."""
    root = Path(root)
    info = info if info is not None else dataset_info(root)
    channels, num_labels = len(info.channels), len(info.labels)
    pad = [background_value(spec) for spec in channel_specs(normalization, channels)]
    for files, label_path in split_cases(root, split, info):
        volume, label, scan = _read_case(files, label_path, num_labels)
        img_slices = to_channel_slices(normalize_channels(volume, normalization, channels), axis)
        fit = plan_fit(img_slices.shape[2:], size)
        if fit.resized:
            raise PsfError(f"{files[0]}: slices {fit.source} are larger than the model size {size}; pick a larger --image-size")
        yield CaseSlices(fit_slices(img_slices, fit, pad),
                         fit_slices(to_slices(label, axis).astype(np.float32), fit)[:, 0].astype(np.uint8),
                         fit_slices(np.ones(img_slices[:, 0].shape, np.float32), fit)[:, 0] > 0.5,
                         slice_positions(scan.geometry.affine, label.shape[axis], axis),
                         (label_path.name.split(".")[0], *_slice_spacing(scan, axis)))


def _slice_spacing(scan, axis: int) -> tuple[tuple[float, float, float], str]:
    """Voxel size along (slice, row, col) of to_slices' output, from the scan's affine (1 pixel without one)."""
    affine = scan.geometry.affine
    if affine is None:
        return (1.0, 1.0, 1.0), "pixel"
    sizes = [float(v) for v in np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)]
    return (sizes[axis], *(s for a, s in enumerate(sizes) if a != axis)), "mm"


def slice_positions(affine: np.ndarray | None, count: int, axis: int = 2) -> np.ndarray | None:
    """World position (mm) of slices 0..count-1 along the slice axis' own direction; None without an affine."""
    if affine is None:
        return None
    step = np.asarray(affine, float)[:3, axis]
    normal = step / np.linalg.norm(step)
    return (np.asarray(affine, float)[:3, 3] @ normal) + np.arange(count) * (step @ normal)
