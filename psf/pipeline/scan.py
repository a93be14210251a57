"""One scan through the whole data path: preprocess -> segment -> postprocess, in the scan's own grid."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from psf.io.scan import Scan
from psf.pipeline.postprocess import probs_to_labels
from psf.pipeline.preprocess import (
    background_value,
    channel_specs,
    fit_slices,
    from_slices,
    normalize_channels,
    plan_fit,
    to_channel_slices,
)
from psf.pipeline.segmenter import Segmenter


@dataclass
class Timings:
    """Seconds spent per part of the data path (summed over scans)."""

    preprocess: float = 0.0
    model: float = 0.0
    postprocess: float = 0.0
    slices: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, other: "Timings") -> None:
        self.preprocess += other.preprocess
        self.model += other.model
        self.postprocess += other.postprocess
        self.slices += other.slices


def segment_scan(scan: Scan, segmenter: Segmenter, axis: int) -> tuple[np.ndarray, Timings]:
    """Label mask (uint8, the scan's voxel order and shape) and where the time went. A multi-channel scan
    has pixels (C, i, j, k), channels in the model's order; the mask is (i, j, k).

    Slices stream through in batches, so memory stays at one batch of probabilities, whatever the scan size.
    """
    manifest = segmenter.manifest
    timings = Timings()
    t0 = time.perf_counter()
    channels = manifest.in_channels
    slices = to_channel_slices(normalize_channels(scan.pixels, manifest.normalization, channels), axis)
    pad = [background_value(spec) for spec in channel_specs(manifest.normalization, channels)]
    fit = plan_fit(slices.shape[2:], manifest.image_size)
    labels = np.empty((slices.shape[0], *slices.shape[2:]), dtype=np.uint8)
    timings.preprocess += time.perf_counter() - t0
    step = segmenter.options.batch_size
    for start in range(0, len(slices), step):
        t0 = time.perf_counter()
        images = fit_slices(slices[start : start + step], fit, pad)
        t1 = time.perf_counter()
        probs = segmenter.probs(images)
        t2 = time.perf_counter()
        labels[start : start + step] = probs_to_labels(probs, fit)
        t3 = time.perf_counter()
        timings.preprocess += t1 - t0
        timings.model += t2 - t1
        timings.postprocess += t3 - t2
    timings.slices = len(slices)
    return from_slices(labels, axis), timings
