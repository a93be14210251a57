"""What a reader hands on: pixels and the geometry needed to write a mask back. Nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Where the voxels sit in the world.

    affine: 4x4 voxel (i, j, k) -> world (mm) matrix; None for plain 2D images (PNG).
    qform/sform and their codes are kept so that a NIfTI mask carries the source's exact header codes.
    """

    affine: np.ndarray | None = None
    qform: np.ndarray | None = None
    qform_code: int = 0
    sform: np.ndarray | None = None
    sform_code: int = 0
    nifti_version: int = 1


@dataclass(frozen=True)
class Scan:
    """One scan: `pixels` in voxel order (i, j, k), float32; 2D images come as (rows, cols, 1).

    `format` names the writer that puts a mask back in the same geometry ("nifti", "dicom" or "image2d").
    """

    pixels: np.ndarray
    geometry: Geometry = field(default_factory=Geometry)
    format: str = "nifti"
    # What a user should know about how the scan was read (e.g. DICOM slices left out), one line each.
    warnings: tuple[str, ...] = ()
    # DICOM series: the member files the pixels came from, in slice order (a DICOM-SEG must reference exactly these).
    source_files: tuple = ()


@dataclass(frozen=True)
class ReadOptions:
    """What a user may tell a reader. volume_index: which volume of a 4D NIfTI to segment;
    time_limit_s: give up on a scan whose reading takes longer (None: no limit)."""

    volume_index: int | None = None
    time_limit_s: float | None = 120.0
