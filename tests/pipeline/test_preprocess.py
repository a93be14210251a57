"""Preprocess/postprocess: intensity normalization and the exact round trip to the model's canvas."""

from __future__ import annotations

import numpy as np
import pytest

from psf.pipeline.postprocess import probs_to_labels
from psf.pipeline.preprocess import (
    DEFAULT_NORMALIZATION,
    fit_slices,
    normalize,
    plan_fit,
)


def test_percentile_normalization_ignores_scanner_scale_and_offset():
    rng = np.random.default_rng(1)
    volume = rng.gamma(2.0, 40.0, size=(30, 40, 5)).astype(np.float32)
    a = normalize(volume, DEFAULT_NORMALIZATION)
    b = normalize(volume * 3.7 + 120.0, DEFAULT_NORMALIZATION)
    assert a.min() == 0 and a.max() == 1
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_unknown_normalization_is_a_clear_error():
    with pytest.raises(Exception, match="unknown normalization method"):
        normalize(np.zeros((2, 2)), {"method": "zscore"})


@pytest.mark.parametrize("shape", [(197, 233), (256, 256), (50, 20), (300, 180), (512, 512)])
def test_labels_come_back_in_the_source_grid(shape):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(2, *shape))
    fit = plan_fit(shape, 256)
    one_hot = np.eye(3, dtype=np.float32)[truth].transpose(0, 3, 1, 2)
    canvas = np.stack([fit_slices(one_hot[:, c], fit)[:, 0] for c in range(3)], axis=1)
    canvas[:, 0] += 1e-3  # padding decodes to background
    labels = probs_to_labels(canvas, fit)
    assert labels.shape == truth.shape
    if not fit.resized:
        np.testing.assert_array_equal(labels, truth)
    else:  # shrunk and restored: most labels survive the bilinear round trip of random noise
        assert (labels == truth).mean() > 0.4


def test_argmax_classes_equals_numpy_argmax_including_ties():
    from psf.pipeline.postprocess import argmax_classes

    probs = np.random.default_rng(2).integers(0, 3, size=(4, 5, 16, 16)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(argmax_classes(probs), np.argmax(probs, axis=1))


def test_ct_window_normalization():
    hu = np.array([-2000.0, -1000.0, 0.0, 1000.0, 3000.0])
    np.testing.assert_allclose(normalize(hu, {"method": "window", "low": -1000, "high": 1000}), [0, 0, 0.5, 1, 1])
