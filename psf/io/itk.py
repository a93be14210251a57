"""MHA/MHD/NRRD in, with SimpleITK (research tools' formats). Geometry comes as origin, spacing and
direction in LPS and is handed on as a RAS affine; the mask is written as NIfTI in patient space.

The header is read first and its declared size checked, so a crafted file cannot make ITK allocate
an absurd buffer; truncated data makes ITK fail, which becomes a ScanReadError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.errors import MissingDependency, ScanReadError
from psf.io.scan import Geometry, ReadOptions, Scan

ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
MAX_VOXELS = 1024**3 // 4
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sitk():
    try:
        import SimpleITK as sitk
    except ImportError as exc:
        raise MissingDependency("SimpleITK (MHA/NRRD reading)", "itk") from exc
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    return sitk


def read_itk(path: str | Path, options: ReadOptions = ReadOptions()) -> Scan:
    """A 2D/3D scalar MHA/MHD/NRRD image as a Scan (voxel order i, j, k; RAS affine)."""
    sitk = _sitk()
    path = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ScanReadError(path, f"not a readable {path.suffix.lstrip('.').upper()} header ({_first_line(exc)})") from exc
    size = reader.GetSize()
    if not 2 <= len(size) <= 3 or min(size) < 1:
        raise ScanReadError(path, f"image has size {size}; psf reads 2D/3D images with every size >= 1")
    if int(np.prod(size, dtype=np.int64)) * reader.GetNumberOfComponents() > MAX_VOXELS:
        raise ScanReadError(path, f"declared size {size} is larger than the {MAX_VOXELS} voxels psf accepts")
    if reader.GetNumberOfComponents() != 1:
        raise ScanReadError(path, f"{reader.GetNumberOfComponents()} components per voxel; psf segments scalar images")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ScanReadError(path, f"pixel data is truncated or unreadable ({_first_line(exc)})") from exc
    pixels = sitk.GetArrayFromImage(image).astype(np.float32).T  # ITK arrays are (k, j, i)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    dim = image.GetDimension()
    direction = np.eye(3)
    direction[:dim, :dim] = np.array(image.GetDirection()).reshape(dim, dim)
    spacing, origin = np.ones(3), np.zeros(3)
    spacing[:dim], origin[:dim] = image.GetSpacing(), image.GetOrigin()
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(spacing)
    affine[:3, 3] = origin
    ras = LPS_TO_RAS @ affine
    return Scan(pixels=np.ascontiguousarray(pixels), format="itk",
                geometry=Geometry(affine=ras, qform=ras, qform_code=1, sform=ras, sform_code=1))


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "Exception thrown" not in line and "/" not in line[:2]), lines[-1] if lines else "")
    return detail[:200]
