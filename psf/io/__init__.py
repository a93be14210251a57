"""Scans in, masks out. Readers are registered here, by suffix; numpy, nibabel and Pillow only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from psf.errors import ScanReadError
from psf.io.nifti import read_nifti, write_nifti
from psf.io.png import read_png, write_png
from psf.io.scan import Geometry, Scan

READERS: dict[str, Callable[[Path], Scan]] = {
    ".nii.gz": read_nifti,
    ".nii": read_nifti,
    ".png": read_png,
}
# A mask is written in the format its scan came in.
MASK_SUFFIX = {"nifti": ".nii.gz", "png": ".png"}

__all__ = ["Geometry", "Scan", "ScanReadError", "find_scans", "mask_path", "read_scan", "scan_suffix", "write_mask"]


def scan_suffix(path: str | Path) -> str | None:
    """The registered suffix of `path` (".nii.gz" before ".gz"), or None if psf cannot read it."""
    name = Path(path).name.lower()
    return next((s for s in sorted(READERS, key=len, reverse=True) if name.endswith(s)), None)


def read_scan(path: str | Path) -> Scan:
    path = Path(path)
    if not path.is_file():
        raise ScanReadError(path, "no such file")
    suffix = scan_suffix(path)
    if suffix is None:
        raise ScanReadError(path, f"unknown scan format; psf reads {', '.join(READERS)}")
    return READERS[suffix](path)


def find_scans(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """Expand files and folders (recursively) into (scan, root) pairs; root is what outputs mirror."""
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                if path.is_file() and scan_suffix(path) and not path.name.startswith("."):
                    found.append((path, item))
        else:
            found.append((item, item.parent))
    return found


def mask_path(scan: Path, root: Path, out_dir: Path, fmt: str) -> Path:
    """out_dir/<scan's folder relative to root>/<scan stem>_mask<suffix>."""
    suffix = scan_suffix(scan) or ""
    stem = scan.name[: len(scan.name) - len(suffix)] if suffix else scan.stem
    relative = scan.parent.relative_to(root) if scan.is_relative_to(root) else Path()
    return out_dir / relative / f"{stem}_mask{MASK_SUFFIX[fmt]}"


def write_mask(path: Path, mask: np.ndarray, scan: Scan) -> Path:
    """Write a uint8 label mask (voxel order, same shape as the scan) in the scan's format and geometry."""
    if scan.format == "nifti":
        return write_nifti(path, mask.astype(np.uint8), scan.geometry)
    return write_png(path, mask)
