"""Model output -> mask in the scan's own grid: undo the fit, argmax, restack along the slicing axis."""

from __future__ import annotations

import numpy as np

from psf.pipeline.preprocess import Fit, resize_stack


def probs_to_labels(probs: np.ndarray, fit: Fit) -> np.ndarray:
    """(n, classes, size, size) probabilities -> (n, rows, cols) uint8 labels in the source slice grid.

    Crops the padding; where the slices were shrunk, the class maps are resized back (bilinear) before
    the argmax, which gives smoother boundaries than resizing labels.
    """
    r, c = fit.offset
    crop = probs[:, :, r : r + fit.scaled[0], c : c + fit.scaled[1]]
    if fit.resized:
        n, k = crop.shape[:2]
        crop = resize_stack(crop.reshape(n * k, *fit.scaled), fit.source).reshape(n, k, *fit.source)
    return argmax_classes(crop)


def argmax_classes(probs: np.ndarray) -> np.ndarray:
    """np.argmax(probs, axis=1) as uint8 (ties -> lower class), by one pass per class: 2-3x faster than
    numpy's argmax over a non-contiguous axis, which cost ~0.4 s per 200-slice volume."""
    labels = np.zeros((probs.shape[0], *probs.shape[2:]), dtype=np.uint8)
    best = probs[:, 0].copy()
    for k in range(1, probs.shape[1]):
        better = probs[:, k] > best
        labels[better] = k
        np.maximum(best, probs[:, k], out=best)
    return labels
