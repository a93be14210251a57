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
    """Read a 2D/3D NIfTI file (or one volume of a 4D file) into a Scan: float32 voxels, the file's geometry.

    Stricter than nibabel, which loads some broken files without a word: a .nii.gz must be a complete
    gzip stream (CRC and length checked), the header's sizeof_hdr and bitpix must be consistent, and
    the file must hold every byte the header declares.
    """
    path = Path(path)
    img, payload, head = _load(path)
    _check_raw_header(path, head)
    header = img.header
    dtype = header.get_data_dtype()
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ScanReadError(path, f"image has shape {shape}; need 2D or 3D with every size >= 1")
    if int(np.prod(shape)) > MAX_VOXELS:
        raise ScanReadError(path, f"declared size {shape} is larger than the {MAX_VOXELS} voxels psf accepts")
    extra = [s for s in shape[3:] if s > 1]
    if len(extra) > 1 or extra and options.volume_index is None:
        raise ScanReadError(path, f"image is 4D {shape}; pick one volume with --volume-index N (0..{shape[3] - 1})")
    needed = int(header.get_data_offset()) + int(np.prod(shape)) * dtype.itemsize
    if payload < needed:
        raise ScanReadError(path, f"file holds {payload} bytes, the header declares {needed}; the file is truncated")
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
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    geometry = Geometry(
        affine=np.asarray(img.affine, dtype=np.float64),
        qform=None if qform is None else np.asarray(qform, dtype=np.float64),
        qform_code=int(qcode),
        sform=None if sform is None else np.asarray(sform, dtype=np.float64),
        sform_code=int(scode),
        nifti_version=2 if int(header["sizeof_hdr"]) == 540 else 1,
    )
    return Scan(pixels=pixels, geometry=geometry, format="nifti")


def _load(path: Path):
    """(image, bytes of the uncompressed file). A .gz file is decompressed whole, so truncation and
    corruption anywhere in it are caught, and at most MAX_VOXELS * 8 bytes are ever inflated."""
    import gzip
    import zlib

    import nibabel as nib

    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                raw = handle.read(MAX_VOXELS * 8 + 1)
                if len(raw) > MAX_VOXELS * 8:
                    raise ScanReadError(path, "decompresses to more than psf accepts (a gzip bomb?)")
                handle.read()  # reaching the end verifies the CRC and length trailer
            return _from_bytes(raw), len(raw), raw[:80]
        with open(path, "rb") as handle:
            head = handle.read(80)
        return nib.load(str(path)), path.stat().st_size, head
    except ScanReadError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise ScanReadError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # nibabel raises many types for a bad header
        raise ScanReadError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc


def _check_raw_header(path: Path, head: bytes) -> None:
    """nibabel silently repairs sizeof_hdr and bitpix on load; a file with wrong values there is corrupt."""
    import struct

    for order in "<>":
        if len(head) < 80:
            break
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348:
            datatype, bitpix = struct.unpack(order + "hh", head[70:74])
            return _check_bitpix(path, datatype, bitpix)
        if size == 540:
            datatype, bitpix = struct.unpack(order + "hh", head[12:16])
            return _check_bitpix(path, datatype, bitpix)
    raise ScanReadError(path, "header size field is not 348 (NIfTI-1) or 540 (NIfTI-2); not a NIfTI file or a corrupt one")


BITS = {2: 8, 4: 16, 8: 32, 16: 32, 64: 64, 256: 8, 512: 16, 768: 32, 1024: 64, 1280: 64, 32: 64, 128: 24, 1536: 128}


def _check_bitpix(path: Path, datatype: int, bitpix: int) -> None:
    if datatype in BITS and BITS[datatype] != bitpix:
        raise ScanReadError(path, f"header says {bitpix} bits per voxel for datatype {datatype} ({BITS[datatype]} bits); corrupt header")


def _from_bytes(raw: bytes):
    import nibabel as nib

    if len(raw) >= 4 and int.from_bytes(raw[:4], "little") == 540 or int.from_bytes(raw[:4], "big") == 540:
        return nib.Nifti2Image.from_bytes(raw)
    return nib.Nifti1Image.from_bytes(raw)


def write_nifti(path: str | Path, volume: np.ndarray, geometry: Geometry) -> Path:
    """Write `volume` (voxel order) with the source's affine and qform/sform codes, atomically."""
    import nibabel as nib

    cls = nib.Nifti2Image if geometry.nifti_version == 2 else nib.Nifti1Image
    img = cls(np.asarray(volume), geometry.affine)
    # The source's own codes, also when they are 0 (then readers fall back to the zooms, as for the source).
    img.set_sform(geometry.sform if geometry.sform is not None else geometry.affine, code=int(geometry.sform_code))
    img.set_qform(geometry.qform if geometry.qform is not None else geometry.affine, code=int(geometry.qform_code))
    img.set_data_dtype(np.asarray(volume).dtype)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
