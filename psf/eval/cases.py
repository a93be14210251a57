"""What `psf score` reads: prediction/reference pairs matched by name, each with its voxel spacing from the
file's geometry, and the label names of the data set the references come from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psf.errors import PsfError, UsageError

# What an older psf data set folder (no dataset.json) holds: the MNI152 demo.
DEFAULT_LABELS = ("other", "grey_matter", "white_matter")
SPACING_RTOL = 1e-3


@dataclass(frozen=True)
class Case:
    """One scored case: integer label maps of the same shape, and the reference's voxel size per axis."""

    name: str
    pred: np.ndarray
    truth: np.ndarray
    spacing: tuple[float, ...]
    unit: str  # "mm" from a file's affine; "pixel" for plain 2D images that carry none
    pred_path: Path
    truth_path: Path


def spacing_of(scan) -> tuple[tuple[float, ...], str]:
    """Voxel size along each array axis: the lengths of the affine's columns (mm), or 1 pixel without one."""
    affine = scan.geometry.affine
    ndim = scan.pixels.ndim
    if affine is None:
        return (1.0,) * ndim, "pixel"
    columns = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :ndim], axis=0)
    return tuple(float(c) for c in columns) + (1.0,) * (ndim - len(columns)), "mm"


def read_cases(predictions: Path, truth: Path) -> Iterator[Case]:
    """Each reference label file under `truth` with its `<stem>_mask.*` in `predictions`; refuses a missing
    prediction, a shape mismatch and a voxel size mismatch (HD95 would be in the wrong unit)."""
    from psf.io import MASK_SUFFIX, find_scans, read_scan, scan_suffix

    for source in find_scans([truth]):
        truth_path = source.path
        suffix = scan_suffix(truth_path)
        stem = truth_path.name[: -len(suffix)]
        candidates = [predictions / f"{stem}_mask{s}" for s in MASK_SUFFIX.values()]
        pred_path = next((p for p in candidates if p.is_file()), None)
        if pred_path is None:
            raise PsfError(f"no prediction for {truth_path} in {predictions} (looked for {stem}_mask.*)")
        pred_scan, ref_scan = read_scan(pred_path), read_scan(truth_path)
        if pred_scan.pixels.shape != ref_scan.pixels.shape:
            raise PsfError(f"{pred_path} has shape {pred_scan.pixels.shape}, its reference {truth_path} {ref_scan.pixels.shape}")
        spacing, unit = spacing_of(ref_scan)
        pred_spacing, pred_unit = spacing_of(pred_scan)
        if pred_unit == unit == "mm" and not np.allclose(pred_spacing, spacing, rtol=SPACING_RTOL):
            raise PsfError(f"{pred_path} has voxel size {_mm(pred_spacing)} mm, its reference {truth_path} "
                           f"{_mm(spacing)} mm; score masks written in the reference's geometry")
        yield Case(stem, np.rint(pred_scan.pixels).astype(np.int64), np.rint(ref_scan.pixels).astype(np.int64),
                   spacing, unit, pred_path, truth_path)


def label_names(truth: Path, given: str | None) -> tuple[list[str], str]:
    """(names in label-value order, where they came from): --labels, else the dataset.json of the data set
    the references belong to (psf, nnU-Net v2 or MSD style, in the folder or one or two levels up), else
    the MNI152 demo's names."""
    if given:
        names = [n.strip() for n in given.split(",")]
        if len(names) < 2 or not all(names):
            raise UsageError(f"--labels {given!r}: give at least two comma-separated names, background first")
        return names, "--labels"
    for folder in (truth, truth.parent, truth.parent.parent):
        path = folder / "dataset.json"
        if path.is_file():
            return _labels_from(path), str(path)
    return list(DEFAULT_LABELS), "default (MNI152 demo)"


def _labels_from(path: Path) -> list[str]:
    """psf: ["background", "a", ...]; nnU-Net v2: {"background": 0, "a": 1}; MSD: {"0": "background", "1": "a"}."""
    try:
        labels = json.loads(path.read_text())["labels"]
        if isinstance(labels, list):
            names = [str(n) for n in labels]
        elif all(isinstance(v, int) for v in labels.values()):
            names = [name for name, _ in sorted(labels.items(), key=lambda item: item[1])]
            if sorted(labels.values()) != list(range(len(labels))):
                raise ValueError("label values are not 0..K-1")
        else:
            names = [str(labels[str(i)]) for i in range(len(labels))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PsfError(f"{path}: cannot read label names ({type(exc).__name__}: {exc}); pass --labels a,b,c") from exc
    if len(names) < 2:
        raise PsfError(f"{path} lists {len(names)} label(s); a segmentation needs background and at least one more")
    return names


def _mm(spacing: tuple[float, ...]) -> str:
    return "x".join(f"{s:g}" for s in spacing)
