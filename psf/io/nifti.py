"""NIfTI scans in, NIfTI masks out (nibabel), keeping the source affine and qform/sform codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.errors import ScanReadError
from psf.io.atomic import atomic_path
from psf.io.scan import Geometry, ReadOptions, Scan

# A crafted header must not make us allocate more than this (voxels).
MAX_VOXELS = 1024**3 // 4


def read_nifti(path: str | Path, options: ReadOptions = ReadOptions()) -> Scan:
    """Read a 2D/3D NIfTI file (or one volume of a 4D file) into a Scan: float32 voxels, the file's geometry."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a bad file; all mean "not a NIfTI we can read"
        raise ScanReadError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ScanReadError(path, f"image has shape {shape}; need 2D or 3D with every size >= 1")
    if int(np.prod(shape)) > MAX_VOXELS:
        raise ScanReadError(path, f"declared size {shape} is larger than the {MAX_VOXELS} voxels psf accepts")
    extra = [s for s in shape[3:] if s > 1]
    if len(extra) > 1 or extra and options.volume_index is None:
        raise ScanReadError(path, f"image is 4D {shape}; pick one volume with --volume-index N (0..{shape[3] - 1})")
    try:
        if extra:
            if not 0 <= options.volume_index < shape[3]:
                raise ScanReadError(path, f"--volume-index {options.volume_index} is outside 0..{shape[3] - 1}")
            pixels = np.asarray(img.dataobj[..., options.volume_index], dtype=np.float32)
        else:
            pixels = np.asarray(img.dataobj, dtype=np.float32)
    except ScanReadError:
        raise
    except Exception as exc:
        raise ScanReadError(path, f"pixel data is truncated or unreadable ({type(exc).__name__}: {exc})") from exc
    pixels = pixels.reshape(shape[:3] if len(shape) >= 3 else (*shape, 1))
    if not np.isfinite(pixels).all():
        raise ScanReadError(path, "pixel data contains NaN or infinity")
    header = img.header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    geometry = Geometry(
        affine=np.asarray(img.affine, dtype=np.float64),
        qform=None if qform is None else np.asarray(qform, dtype=np.float64),
        qform_code=int(qcode),
        sform=None if sform is None else np.asarray(sform, dtype=np.float64),
        sform_code=int(scode),
        nifti_version=2 if isinstance(img, nib.Nifti2Image) else 1,
    )
    return Scan(pixels=pixels, geometry=geometry, format="nifti")


def write_nifti(path: str | Path, volume: np.ndarray, geometry: Geometry) -> Path:
    """Write `volume` (voxel order) with the source's affine and qform/sform codes, atomically."""
    import nibabel as nib

    cls = nib.Nifti2Image if geometry.nifti_version == 2 else nib.Nifti1Image
    img = cls(np.asarray(volume), geometry.affine)
    if geometry.qform is not None or geometry.sform is not None:
        img.set_qform(geometry.qform if geometry.qform is not None else geometry.affine, int(geometry.qform_code))
        img.set_sform(geometry.sform if geometry.sform is not None else geometry.affine, int(geometry.sform_code))
    img.set_data_dtype(np.asarray(volume).dtype)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
