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
    return np.argmax(crop, axis=1).astype(np.uint8)
