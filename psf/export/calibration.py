"""Real slices for int8 calibration and checks: scans from a folder or the MNI152 template, preprocessed as psf-infer does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.errors import PsfError, ScanReadError, UsageError
from psf.io import find_scans, read_source
from psf.pipeline.preprocess import fit_slices, normalize, plan_fit, to_slices


def calibration_slices(folder: Path, size: int, normalization: dict, count: int, axis: int = 2, seed: int = 0) -> np.ndarray:
    """`count` slices (n, 1, size, size) drawn evenly (fixed seed) from every scan in `folder`.

    Slices with no signal (all one value after normalization) are skipped: they calibrate nothing."""
    if count < 1:
        raise UsageError(f"--calibration-slices must be >= 1, got {count}")
    sources = find_scans([folder]) if folder.exists() else []
    if not sources:
        raise UsageError(f"--calibration {folder}: no readable scans there (NIfTI, DICOM, PNG, ...); point it at "
                         "the training images, e.g. demo/data/train/images")
    pool = []
    for source in sources:
        try:
            scan = read_source(source)
        except ScanReadError as exc:
            raise PsfError(f"--calibration: {exc}; remove the file or pick another folder") from exc
        slices = to_slices(normalize(scan.pixels, normalization), axis)
        slices = slices[np.ptp(slices.reshape(len(slices), -1), axis=1) > 0]
        if len(slices):
            pool.append(fit_slices(slices, plan_fit(slices.shape[1:], size)))
    if not pool:
        raise UsageError(f"--calibration {folder}: every slice is blank")
    stack = np.concatenate(pool)
    picks = np.sort(np.random.default_rng(seed).choice(len(stack), min(count, len(stack)), replace=False))
    return stack[picks].astype(np.float32)


def template_slices(size: int, normalization: dict, count: int = 8, span: tuple[float, float] = (0.25, 0.75)) -> np.ndarray:
    """`count` axial slices through the brain of the MNI152 T1 template (between the `span` fractions of
    its height), preprocessed like inference."""
    from psf.data.mni152 import TEMPLATE_FILES, template_dir
    from psf.io import read_scan

    volume = read_scan(template_dir() / TEMPLATE_FILES["t1"]).pixels
    slices = to_slices(normalize(volume, normalization), 2)
    picks = np.linspace(len(slices) * span[0], len(slices) * span[1], count).astype(int)
    return fit_slices(slices[picks], plan_fit(slices.shape[1:], size))
