"""Per-modality normalization and multi-channel scans through preprocessing (what training and psf-infer share)."""

from __future__ import annotations

import numpy as np
import pytest

from psf.errors import UsageError
from psf.pipeline.preprocess import (
    background_value,
    channel_specs,
    fit_slices,
    normalize,
    normalize_channels,
    plan_fit,
    to_channel_slices,
)

CT = {"method": "ct", "clip": [-100.0, 300.0], "mean": 50.0, "std": 25.0}


def test_ct_normalization_clips_then_z_scores_with_recorded_statistics():
    hu = np.array([[-1000.0, -100.0], [50.0, 3000.0]], np.float32)[..., None]
    out = normalize(hu, CT)
    assert np.allclose(out[..., 0], [[-6.0, -6.0], [0.0, 10.0]])
    assert background_value(CT) == -6.0  # padding is air, not average tissue
    window = normalize(np.array([0.0, 127.5, 255.0])[:, None, None], {"method": "window", "low": 0, "high": 255})
    assert np.allclose(window.ravel(), [0, 0.5, 1])


def test_multichannel_scan_is_normalized_per_channel_and_sliced_channel_second():
    rng = np.random.default_rng(0)
    scan = np.stack([rng.uniform(0, 1000, (6, 5, 4)), rng.uniform(-50, 50, (6, 5, 4))]).astype(np.float32)
    specs = [{"method": "percentile", "lower": 0.5, "upper": 99.5}, CT]
    norm = normalize_channels(scan, specs, 2)
    assert norm.shape == (2, 6, 5, 4) and 0 <= norm[0].min() and norm[0].max() <= 1
    assert np.allclose(norm[1], (np.clip(scan[1], -100, 300) - 50) / 25)
    slices = to_channel_slices(norm, axis=2)
    assert slices.shape == (4, 2, 6, 5) and np.array_equal(slices[3, 1], norm[1, :, :, 3])
    fitted = fit_slices(slices, plan_fit((6, 5), 8), pad=[0.0, background_value(CT)])
    assert fitted.shape == (4, 2, 8, 8) and fitted[0, 1, 0, 0] == -6.0 and fitted[0, 0, 0, 0] == 0.0
    with pytest.raises(UsageError, match="2 channel"):
        normalize_channels(scan, specs[0], 1)
    with pytest.raises(UsageError, match="1 channel specs"):
        channel_specs([specs[0]], 2)
    assert channel_specs(specs[0], 3) == [specs[0]] * 3  # one dict: the same spec for every channel
