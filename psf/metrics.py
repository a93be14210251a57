"""Overlap metrics on label arrays (numpy): what every report and the demo line print."""

from __future__ import annotations

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
