"""Overlap metrics on label arrays (numpy) and HD95 (medpy, lazily): what every report and the demo line print."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_counts(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, 3) array of true-positive, false-positive, false-negative voxel counts."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    truth = np.asarray(truth).ravel().astype(np.int64)
    joint = np.bincount(truth * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(joint)
    return np.stack([tp, joint.sum(0) - tp, joint.sum(1) - tp], axis=1)


def dice_iou(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice and IoU from summed confusion counts (whole data set, not mean of slices)."""
    tp, fp, fn = counts[:, 0].astype(float), counts[:, 1].astype(float), counts[:, 2].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0)
    return dice, iou


def report(counts: np.ndarray, labels: list[str]) -> dict:
    """{"dice": {label: x}, "iou": {...}, "mean_dice": mean over foreground classes (label 0 excluded)}."""
    dice, iou = dice_iou(counts)
    return {
        "dice": {name: round(float(d), 4) for name, d in zip(labels, dice)},
        "iou": {name: round(float(v), 4) for name, v in zip(labels, iou)},
        "mean_dice": round(float(np.mean(dice[1:])), 4),
        "mean_iou": round(float(np.mean(iou[1:])), 4),
    }


def case_dice(counts: np.ndarray) -> list[float | None]:
    """Per-class Dice of one case from its confusion counts; None where prediction and reference are
    both empty (undefined: nnU-Net v2 records NaN there and leaves the case out of its means).
    dice_iou() above gives 1.0 instead, which is right for counts pooled over a whole data set."""
    tp, fp, fn = (counts[:, i].astype(float) for i in range(3))
    return [None if 2 * t + p + n == 0 else float(2 * t / (2 * t + p + n)) for t, p, n in zip(tp, fp, fn)]


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance between two non-empty boolean masks, in the unit of `spacing`.

    The distance itself is medpy's (medpy.metric.binary.hd95, connectivity 1); this wrapper only crops
    both masks to the box around them plus one voxel, so a small structure in a large volume costs a small
    distance transform. The margin keeps a voxel that is inside the array but outside the box counted as
    background, exactly as in the whole array. Raises ValueError when either mask is empty (undefined).
    """
    hd95_impl = _medpy_hd95()
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape or len(spacing) != pred.ndim:
        raise ValueError(f"shapes {pred.shape} / {truth.shape} and spacing {tuple(spacing)} disagree")
    if not pred.any() or not truth.any():
        raise ValueError("HD95 is undefined when a mask is empty")
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(pred | truth))
    return float(hd95_impl(pred[box], truth[box], voxelspacing=[float(s) for s in spacing], connectivity=1))


def hd95_implementation() -> str:
    """Which code computed HD95 (recorded in every report): 'medpy <version> medpy.metric.binary.hd95'."""
    from importlib.metadata import version

    _medpy_hd95()
    return f"medpy {version('medpy')} medpy.metric.binary.hd95"


def _medpy_hd95():
    try:
        from medpy.metric.binary import hd95 as medpy_hd95
    except ImportError:
        from psf.errors import MissingDependency

        raise MissingDependency("medpy (HD95 surface distances)", "eval") from None
    return medpy_hd95
