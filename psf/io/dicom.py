"""DICOM in (pydicom): single images, series spread over files, enhanced multi-frame.

Only pixels (after RescaleSlope/Intercept) and geometry leave this module: no header value, name or
UID. Geometry is built in DICOM patient space (LPS) and handed on as a RAS affine, so the mask is a
NIfTI file that sits on the scan in any viewer. Voxel order is (column, row, slice).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from psf.errors import MissingDependency, ScanReadError
from psf.io.scan import Geometry, Scan

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
MAX_VOXELS = 1024**3 // 4
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Slice positions may differ from a regular grid by this fraction of the spacing (scanner rounding).
SPACING_TOLERANCE = 0.05


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise MissingDependency("pydicom (DICOM reading)", "dicom") from exc
    return pydicom


def looks_like_dicom(path: Path) -> bool:
    """A DICOM suffix, or the 'DICM' magic at byte 128 (files without a suffix are common)."""
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_header(path: Path):
    """The dataset without pixel data (for grouping series during discovery)."""
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for malformed files
        raise ScanReadError(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc


def series_uid(path: Path) -> str | None:
    """The file's SeriesInstanceUID (used only to group files; never leaves psf.io), or None."""
    try:
        return str(read_header(path).get("SeriesInstanceUID", "")) or None
    except ScanReadError:
        return None


def read_dicom(files: list[Path], name: Path) -> Scan:
    """One scan from one file (2D or multi-frame) or from the files of one series. `name` is the path
    errors name (the file, or the series folder).

    A series with unreadable members (header or pixel data) is read without them when the rest is still one
    regular volume (no gap along the slice normal): the Scan's `warnings` name every file left out and where its
    slice sat. Otherwise the error names every unreadable file and the gap's position."""
    if len(files) == 1:
        dataset = _read_full(files[0])
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            return _multiframe(dataset, files[0])
        return _stack([dataset], [files[0]], name)
    good: list[tuple[Path, object, np.ndarray]] = []
    bad: list[tuple[Path, str, object | None]] = []
    for path in files:
        dataset = None
        try:
            dataset = _read_full(path)
            good.append((path, dataset, _pixels(dataset, path)))
        except ScanReadError as exc:
            bad.append((path, exc.reason, dataset))
    if not bad:
        return _stack([g[1] for g in good], [g[0] for g in good], name, [g[2] for g in good])
    listed = "; ".join(f"{path.name} ({reason}{_where(ds, path)})" for path, reason, ds in bad)
    if not good:
        raise ScanReadError(name, f"no member of the series is readable: {listed}")
    try:
        scan = _stack([g[1] for g in good], [g[0] for g in good], name, [g[2] for g in good],
                      step_hint=_series_step([g[1] for g in good] + [b[2] for b in bad if b[2] is not None], files))
    except ScanReadError as exc:
        raise ScanReadError(name, f"{len(bad)} unreadable member(s): {listed}; without them the series is not one "
                                  f"consistent volume: {exc.reason}; not segmented") from exc
    warning = (f"left out {len(bad)} unreadable slice file(s) of {len(files)}: {listed}; segmented the remaining "
               f"{len(good)} slices, which form one regular volume")
    return replace(scan, warnings=(*scan.warnings, warning))


def _series_step(datasets: list, files: list[Path]) -> float | None:
    """The slice step of the whole series (all members whose header gives a position), so that gaps left by
    unreadable members are measured against the series' own grid, not the remaining slices'."""
    try:
        planes = [_plane(ds, path) for ds, path in zip(datasets, files)]
    except ScanReadError:
        return None
    normal = np.cross(planes[0][0], planes[0][1])
    gaps = np.diff(np.sort([p[2] @ normal for p in planes]))
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if len(gaps) else None


def _where(dataset, path: Path) -> str:
    """', slice at Z mm along the normal' for a member whose header gave its position; '' otherwise."""
    if dataset is None:
        return ""
    try:
        row_cos, col_cos, position, _ = _plane(dataset, path)
    except ScanReadError:
        return ""
    return f", its slice at {float(position @ np.cross(row_cos, col_cos)):.2f} mm along the slice normal"


def _read_full(path: Path):
    pydicom = _pydicom()
    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:
        raise ScanReadError(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise ScanReadError(path, f"DICOM object without pixel data (Modality {dataset.get('Modality', '?')}); not an image")
    rows, cols, frames = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0)), int(dataset.get("NumberOfFrames", 1) or 1)
    if rows < 1 or cols < 1 or rows * cols * frames > MAX_VOXELS:
        raise ScanReadError(path, f"declared size {rows}x{cols}x{frames} is empty or larger than psf accepts")
    return dataset


def _pixels(dataset, path: Path) -> np.ndarray:
    """Decoded, rescaled pixels (frames, rows, cols) float32; a clear error for truncation or a missing codec."""
    try:
        array = dataset.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        reason = str(exc).split("\n")[0]
        if syntax is not None and syntax.is_compressed and ("handler" in reason.lower() or "plugin" in reason.lower()):
            reason = f"no installed pixel-data handler decodes {syntax.name}; pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg ({reason})"
        raise ScanReadError(path, f"pixel data unreadable: {reason}") from exc
    if array.ndim == 3 and int(dataset.get("SamplesPerPixel", 1)) > 1:
        raise ScanReadError(path, "colour DICOM images are not segmented; psf expects greyscale CT/MR")
    array = array.reshape(-1, array.shape[-2], array.shape[-1]).astype(np.float32)
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    return array * np.float32(slope) + np.float32(intercept)


def _plane(dataset, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row cosine, column cosine, position, (row spacing, column spacing)) of a 2D image, LPS mm."""
    try:
        orientation = np.array(dataset.ImageOrientationPatient, dtype=float)
        position = np.array(dataset.ImagePositionPatient, dtype=float)
        spacing = np.array(dataset.PixelSpacing, dtype=float)
    except (AttributeError, ValueError, TypeError):
        return np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.zeros(3), _fallback_spacing(dataset)
    if orientation.shape != (6,) or position.shape != (3,) or spacing.shape != (2,) or (spacing <= 0).any():
        raise ScanReadError(path, "malformed ImageOrientationPatient/ImagePositionPatient/PixelSpacing")
    return orientation[:3], orientation[3:], position, spacing


def _fallback_spacing(dataset) -> np.ndarray:
    spacing = dataset.get("PixelSpacing") or dataset.get("ImagerPixelSpacing") or [1.0, 1.0]
    return np.array([float(s) for s in spacing], dtype=float)


def _affine(row_cos, col_cos, spacing, origin, step) -> np.ndarray:
    """LPS voxel->world for voxel order (column index i, row index j, slice k), returned in RAS."""
    affine = np.eye(4)
    affine[:3, 0] = row_cos * spacing[1]
    affine[:3, 1] = col_cos * spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = origin
    return LPS_TO_RAS @ affine


def _geometry(affine: np.ndarray) -> Geometry:
    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    sheared = not np.allclose(columns.T @ columns, np.eye(3), atol=1e-4)  # gantry tilt
    return Geometry(affine=affine, qform=None if sheared else affine, qform_code=0 if sheared else 1,
                    sform=affine, sform_code=1)


def _stack(datasets: list, files: list[Path], name: Path, decoded: list[np.ndarray] | None = None,
           step_hint: float | None = None) -> Scan:
    """Sort a series by position along the slice normal and check it is one regular volume.
    decoded: the files' pixels (frames, rows, cols), when the caller has decoded them already;
    step_hint: the series' slice step when some of its members are missing (else the median gap)."""
    planes = [_plane(ds, path) for ds, path in zip(datasets, files)]
    row_cos, col_cos, _, spacing = planes[0]
    shape = (int(datasets[0].Rows), int(datasets[0].Columns))
    for (r, c, _, s), ds, path in zip(planes, datasets, files):
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ScanReadError(name, f"{path.name} is {int(ds.Rows)}x{int(ds.Columns)}, the series {shape[0]}x{shape[1]}")
        if not (np.allclose(r, row_cos, atol=1e-4) and np.allclose(c, col_cos, atol=1e-4)):
            raise ScanReadError(name, f"mixed orientations in one series ({path.name} differs); split the series")
        if not np.allclose(s, spacing, rtol=1e-4):
            raise ScanReadError(name, f"{path.name} has pixel spacing {s.tolist()}, the series {spacing.tolist()}")
    normal = np.cross(row_cos, col_cos)
    distance = np.array([p[2] @ normal for p in planes])
    order = np.argsort(distance)
    distance = distance[order]
    if len(planes) > 1:
        gaps = np.diff(distance)
        step = step_hint or float(np.median(gaps))
        if (gaps < step * SPACING_TOLERANCE).any() or step <= 0:
            i = int(np.argmin(gaps))
            raise ScanReadError(name, f"duplicate slice position: {files[order[i]].name} and {files[order[i + 1]].name}")
        if (np.abs(gaps - step) > step * SPACING_TOLERANCE).any():
            i = int(np.argmax(np.abs(gaps - step)))
            kind = "missing slice" if gaps[i] > step else "inconsistent spacing"
            raise ScanReadError(name, f"{kind} between {files[order[i]].name} and {files[order[i + 1]].name} "
                                      f"({gaps[i]:.3f} mm, the series steps {step:.3f} mm; the gap lies between "
                                      f"{distance[i]:.2f} and {distance[i + 1]:.2f} mm along the slice normal, after "
                                      f"slice {i + 1} of {len(planes)})")
        first, last = planes[order[0]][2], planes[order[-1]][2]
        step_vector = (last - first) / (len(planes) - 1)  # not along the normal under gantry tilt
    else:
        thickness = float(datasets[0].get("SpacingBetweenSlices", 0) or datasets[0].get("SliceThickness", 0) or 1.0)
        step_vector = normal * thickness
    pixels = np.stack([(decoded[i] if decoded is not None else _pixels(datasets[i], files[i]))[0] for i in order])  # (slices, rows, cols)
    affine = _affine(row_cos, col_cos, spacing, planes[order[0]][2], step_vector)
    return Scan(pixels=np.ascontiguousarray(pixels.transpose(2, 1, 0)), geometry=_geometry(affine), format="dicom",
                source_files=tuple(files[i] for i in order))


def _multiframe(dataset, path: Path) -> Scan:
    """Enhanced multi-frame: geometry from the shared and per-frame functional groups."""
    pixels = _pixels(dataset, path)
    try:
        shared = dataset.SharedFunctionalGroupsSequence[0]
        frames = dataset.PerFrameFunctionalGroupsSequence
        orientation = np.array(_functional(shared, frames[0], "PlaneOrientationSequence").ImageOrientationPatient, float)
        spacing = np.array(_functional(shared, frames[0], "PixelMeasuresSequence").PixelSpacing, float)
        positions = np.array([_functional(shared, f, "PlanePositionSequence").ImagePositionPatient for f in frames], float)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        row_cos, col_cos, origin, spacing = _plane(dataset, path)
        affine = _affine(row_cos, col_cos, spacing, origin, np.cross(row_cos, col_cos))
        return Scan(pixels=np.ascontiguousarray(pixels.transpose(2, 1, 0)), geometry=_geometry(affine), format="dicom")
    row_cos, col_cos = orientation[:3], orientation[3:]
    distance = positions @ np.cross(row_cos, col_cos)
    order = np.argsort(distance)
    pixels, positions = pixels[order], positions[order]
    step = (positions[-1] - positions[0]) / max(1, len(positions) - 1) if len(positions) > 1 else np.cross(row_cos, col_cos)
    affine = _affine(row_cos, col_cos, spacing, positions[0], step)
    return Scan(pixels=np.ascontiguousarray(pixels.transpose(2, 1, 0)), geometry=_geometry(affine), format="dicom")


def _functional(shared, frame, sequence: str):
    """An item of a functional-group macro: the frame's own, else the shared one."""
    if sequence in frame:
        return frame[sequence].value[0]
    return shared[sequence].value[0]
