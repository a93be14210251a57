"""Scans in, masks out: readers registered in one place, picked by suffix (and DICOM by content).

A reader returns pixels + geometry and nothing else (psf.io.scan.Scan). numpy, nibabel, Pillow,
pydicom (DICOM) and SimpleITK (MHA/NRRD), the last two imported only when such a file comes; never torch.
"""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psf.errors import ScanReadError
from psf.io.dicom import DICOM_SUFFIXES, looks_like_dicom, read_dicom, series_uid
from psf.io.image2d import IMAGE2D_SUFFIXES, read_image2d, write_png
from psf.io.itk import ITK_SUFFIXES, read_itk
from psf.io.nifti import read_nifti, write_nifti
from psf.io.scan import Geometry, ReadOptions, Scan

READERS: dict[str, Callable[[Path, ReadOptions], Scan]] = {
    ".nii.gz": read_nifti,
    ".nii": read_nifti,
    **{suffix: read_image2d for suffix in IMAGE2D_SUFFIXES},
    **{suffix: read_itk for suffix in ITK_SUFFIXES},
}
# A mask is written in the format its scan came in; DICOM, MHA and NRRD scans get a NIfTI mask in
# patient space (RAS), which every viewer overlays on the original.
MASK_SUFFIX = {"nifti": ".nii.gz", "image2d": ".png", "dicom": ".nii.gz", "itk": ".nii.gz"}

__all__ = ["Geometry", "ReadOptions", "Scan", "ScanReadError", "Source", "find_scans", "mask_path", "read_scan", "read_source",
           "scan_suffix", "write_mask"]


@dataclass(frozen=True)
class Source:
    """One scan to segment: a file, or the files of one DICOM series.

    `path` names the scan in messages and outputs (the file, or the series' folder, with a `_seriesN`
    suffix when a folder holds several series); `root` is the input that output folders mirror.
    """

    path: Path
    root: Path
    files: tuple[Path, ...]
    kind: str  # "file" or "dicom"


def scan_suffix(path: str | Path) -> str | None:
    """The registered suffix of `path` (".nii.gz" before ".gz"), or None if psf cannot read it by suffix."""
    name = Path(path).name.lower()
    return next((s for s in sorted(READERS, key=len, reverse=True) if name.endswith(s)), None)


def read_scan(path: str | Path, options: ReadOptions = ReadOptions()) -> Scan:
    """Read one file: NIfTI, a 2D image or a single DICOM file."""
    path = Path(path)
    if not path.is_file():
        raise ScanReadError(path, "no such file")
    suffix = scan_suffix(path)
    if suffix is None:
        if looks_like_dicom(path):
            return read_dicom([path], path)
        raise ScanReadError(path, f"unknown scan format; psf reads {', '.join(READERS)} and DICOM")
    return READERS[suffix](path, options)


def read_source(source: Source, options: ReadOptions = ReadOptions()) -> Scan:
    """Read a file or a DICOM series, giving up after `options.time_limit_s` (a crafted file must not hang a batch)."""
    with time_limit(options.time_limit_s, source.path), quiet_libraries():
        if source.kind == "dicom":
            return read_dicom(list(source.files), source.path)
        return read_scan(source.files[0], options)


@contextmanager
def quiet_libraries():
    """Readers' libraries warn and log about broken files on their own; psf reports each problem once,
    as a ScanReadError, so their chatter is silenced while a scan is read."""
    loggers = [logging.getLogger(name) for name in ("nibabel", "pydicom", "PIL")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextmanager
def time_limit(seconds: float | None, path: Path):
    """Raise ScanReadError if the block runs longer than `seconds` (main thread on Unix; elsewhere no limit)."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise ScanReadError(path, f"reading took longer than {seconds:g} s; the file may be crafted or on a stalled disk")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def find_scans(inputs: list[Path]) -> list[Source]:
    """Expand files and folders (recursively) into sources; DICOM files are grouped per folder and series."""
    sources: list[Source] = []
    for item in inputs:
        if not item.is_dir():
            kind = "dicom" if not scan_suffix(item) and item.is_file() and looks_like_dicom(item) else "file"
            sources.append(Source(item, item.parent, (item,), kind))
            continue
        dicom_by_folder: dict[Path, list[Path]] = defaultdict(list)
        for path in sorted(item.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if scan_suffix(path):
                sources.append(Source(path, item, (path,), "file"))
            elif looks_like_dicom(path):
                dicom_by_folder[path.parent].append(path)
        for folder, files in dicom_by_folder.items():
            sources.extend(_series_sources(folder, files, item))
    return sources


def _series_sources(folder: Path, files: list[Path], root: Path) -> list[Source]:
    """One source per series in `folder`; unreadable headers become their own (failing) sources."""
    groups: dict[str | None, list[Path]] = defaultdict(list)
    with quiet_libraries():
        for path in files:
            groups[series_uid(path)].append(path)
    sources = [Source(path, root, (path,), "dicom") for path in groups.pop(None, [])]
    several = len(groups) > 1
    for index, (_, members) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[1][0])), start=1):
        name = folder.parent / f"{folder.name}_series{index}" if several else folder
        sources.append(Source(name, root, tuple(members), "dicom"))
    return sources


def mask_path(source: Source | Path, root: Path | None, out_dir: Path, fmt: str) -> Path:
    """out_dir/<the scan's folder relative to root>/<scan stem>_mask<suffix>."""
    path = source.path if isinstance(source, Source) else Path(source)
    root = source.root if isinstance(source, Source) else root
    suffix = scan_suffix(path) or next((s for s in DICOM_SUFFIXES if path.name.lower().endswith(s)), "")
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    relative = path.parent.relative_to(root) if path.parent.is_relative_to(root) else Path()
    return out_dir / relative / f"{stem}_mask{MASK_SUFFIX[fmt]}"


def write_mask(path: Path, mask: np.ndarray, scan: Scan) -> Path:
    """Write a uint8 label mask (voxel order, same shape as the scan) in the scan's format and geometry."""
    if scan.format in ("nifti", "dicom", "itk"):
        return write_nifti(path, mask.astype(np.uint8), scan.geometry)
    return write_png(path, mask)
