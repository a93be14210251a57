"""Scans in, masks out: readers registered in one place, picked by suffix (and DICOM by content).

A reader returns pixels + geometry and nothing else (psf.io.scan.Scan). numpy, nibabel, Pillow,
pydicom (DICOM) and SimpleITK (MHA/NRRD), the last two imported only when such a file comes; never torch.
"""

from __future__ import annotations

import logging
import re
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

__all__ = ["Geometry", "ReadOptions", "Scan", "ScanReadError", "Source", "find_scans", "mask_path", "read_case", "read_scan",
           "read_source", "scan_suffix", "write_mask"]

# nnU-Net's name of one channel file of a multi-channel case: CASE_0000.nii.gz, CASE_0001.nii.gz, ...
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
# Channel files of one case must share the grid: shapes equal, affines within this many mm.
CHANNEL_AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class Source:
    """One scan to segment: a file, or the files of one DICOM series.

    `path` names the scan in messages and outputs (the file, or the series' folder, with a `_seriesN`
    suffix when a folder holds several series); `root` is the input that output folders mirror.
    """

    path: Path
    root: Path
    files: tuple[Path, ...]
    kind: str  # "file", "dicom" or "case" (the channel files of one multi-channel case, in channel order)
    channels: int = 1  # "case": how many channel files the case needs


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
        if source.kind == "case":
            return read_case(_channel_files(source), options)
        return read_scan(source.files[0], options)


def read_case(paths: list[Path] | tuple[Path, ...], options: ReadOptions = ReadOptions()) -> Scan:
    """The channel files of one case (in channel order) as one Scan: pixels (C, X, Y, Z) float32 with the channels
    on a new leading axis (2D images: (C, rows, cols, 1)), geometry and format of the first channel.

    Every channel must have the first one's shape and (within 1 micrometre) its affine; the error names the file."""
    if not paths:
        raise ValueError("read_case needs at least one file")
    scans = [read_scan(path, options) for path in paths]
    first = scans[0]
    for path, scan in zip(paths[1:], scans[1:]):
        if scan.pixels.shape != first.pixels.shape:
            raise ScanReadError(path, f"channel has shape {scan.pixels.shape}, channel 0 ({Path(paths[0]).name}) "
                                      f"{first.pixels.shape}; the channels of a case must share one grid")
        a, b = scan.geometry.affine, first.geometry.affine
        if (a is None) != (b is None) or a is not None and not np.allclose(a, b, atol=CHANNEL_AFFINE_TOLERANCE_MM):
            raise ScanReadError(path, f"channel's geometry (affine) differs from channel 0 ({Path(paths[0]).name}); "
                                      "resample the channels onto one grid")
    return Scan(pixels=np.stack([s.pixels for s in scans]), geometry=first.geometry, format=first.format)


def _channel_files(source: Source) -> list[Path]:
    """The case's files CASE_0000.EXT .. CASE_{C-1}.EXT, or a ScanReadError naming what is missing or extra."""
    suffix = scan_suffix(source.path) or ""
    case = source.path.name[: len(source.path.name) - len(suffix)]
    expected = [source.path.with_name(f"{case}_{c:04d}{suffix}") for c in range(source.channels)]
    missing = [p.name for p in expected if p not in source.files or not p.is_file()]
    extra = [p.name for p in source.files if p not in expected]
    if missing:
        raise ScanReadError(source.path, f"channel file(s) {', '.join(missing)} missing; this model needs {source.channels} "
                                         f"channels per case ({expected[0].name} .. {expected[-1].name})")
    if extra:
        raise ScanReadError(source.path, f"{', '.join(extra)}: more channels than the model's {source.channels}")
    return expected


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


def find_scans(inputs: list[Path], channels: int = 1) -> list[Source]:
    """Expand files and folders (recursively) into sources; DICOM files are grouped per folder and series.

    channels > 1 (a model with several input channels): files named CASE_0000.EXT, CASE_0001.EXT, ... in one folder
    become one source of kind "case" named CASE.EXT; other files stay single sources (and fail with a clear reason)."""
    sources = _find_scans(inputs)
    return group_channels(sources, channels) if channels > 1 else sources


def group_channels(sources: list[Source], channels: int) -> list[Source]:
    """Merge nnU-Net-named channel files of one case (same folder, same suffix) into one "case" source."""
    cases: dict[tuple[Path, str, Path], list[Path]] = defaultdict(list)
    out: list[Source | tuple] = []
    for source in sources:
        suffix = scan_suffix(source.path) if source.kind == "file" else None
        match = CHANNEL_FILE.match(source.path.name[: -len(suffix)]) if suffix else None
        if not match:
            out.append(source)
            continue
        key = (source.path.parent, match["case"] + suffix, source.root)
        if key not in cases:
            out.append(key)
        cases[key].append(source.path)
    return [item if isinstance(item, Source) else
            Source(item[0] / item[1], item[2], tuple(sorted(cases[item])), "case", channels) for item in out]


def _find_scans(inputs: list[Path]) -> list[Source]:
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
    unreadable = groups.pop(None, [])
    if len(groups) == 1:  # one series here: its unreadable files are (most likely) its members; its report names them
        groups[next(iter(groups))] += unreadable
        unreadable = []
    sources = [Source(path, root, (path,), "dicom") for path in unreadable]
    several = len(groups) > 1
    for index, (_, members) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[1][0])), start=1):
        name = folder.parent / f"{folder.name}_series{index}" if several else folder
        sources.append(Source(name, root, tuple(members), "dicom"))
    return sources


def mask_path(source: Source | Path, root: Path | None, out_dir: Path, fmt: str, tag: str = "") -> Path:
    """out_dir/<the scan's folder relative to root>/<scan stem>[_<tag>]_mask<suffix>."""
    path = source.path if isinstance(source, Source) else Path(source)
    root = source.root if isinstance(source, Source) else root
    suffix = _name_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    relative = path.parent.relative_to(root) if path.parent.is_relative_to(root) else Path()
    return out_dir / relative / f"{stem}{'_' + tag if tag else ''}_mask{MASK_SUFFIX[fmt]}"


def _name_suffix(path: Path) -> str:
    return scan_suffix(path) or next((s for s in DICOM_SUFFIXES if path.name.lower().endswith(s)), "")


def source_format(source: Source) -> str:
    """The reader a source will go to ("nifti", "image2d", "dicom", "itk"), from its kind and suffix, without reading it."""
    if source.kind == "dicom":
        return "dicom"
    suffix = scan_suffix(source.path)
    if suffix is None:
        return "dicom"  # read_scan's content sniffing: files without a known suffix are read as DICOM or refused
    reader = READERS[suffix]
    return "nifti" if reader is read_nifti else "image2d" if reader is read_image2d else "itk"


def plan_mask_paths(sources: list[Source], out_dir: Path) -> tuple[list[Path], list[str]]:
    """One mask path per source, distinct, decided before anything is written; and a note per renamed group.

    Inputs whose names share a stem in one folder (vol.mha and vol.nrrd, or vol.nii.gz and a DICOM folder vol/)
    would map to one vol_mask.nii.gz; each gets its format in the name instead: vol_mha_mask.nii.gz,
    vol_nrrd_mask.nii.gz (a DICOM series: vol_dicom_mask.nii.gz). If that still collides (file systems that ignore
    case: vol.MHA and vol.mha), the run is refused, naming both inputs."""
    from psf.errors import UsageError

    targets = [mask_path(s, None, out_dir, source_format(s)) for s in sources]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, target in enumerate(targets):
        groups[str(target).lower()].append(i)
    notes = []
    for members in groups.values():
        if len(members) < 2:
            continue
        for i in members:
            suffix = _name_suffix(sources[i].path)
            tag = suffix.strip(".").replace(".", "_") if suffix else sources[i].kind
            targets[i] = mask_path(sources[i], None, out_dir, source_format(sources[i]), tag=tag)
        notes.append(f"{' and '.join(str(sources[i].path) for i in members)} share a name; their masks are "
                     f"{' and '.join(targets[i].name for i in members)}")
    seen: dict[str, int] = {}
    for i, target in enumerate(targets):
        key = str(target).lower()
        if key in seen:
            raise UsageError(f"{sources[seen[key]].path} and {sources[i].path} would both write {target}; "
                             "rename one of them (or run them into different --out folders)")
        seen[key] = i
    return targets, notes


def write_mask(path: Path, mask: np.ndarray, scan: Scan) -> Path:
    # (a multi-channel scan's geometry is its first channel's; the mask has the spatial shape)
    """Write a uint8 label mask (voxel order, same shape as the scan) in the scan's format and geometry."""
    if scan.format in ("nifti", "dicom", "itk"):
        return write_nifti(path, mask.astype(np.uint8), scan.geometry)
    return write_png(path, mask)
