"""What a layout reader hands the importer: the data set's facts and, per case, a loader of its arrays.

Readers (nnunet.py, msd.py, folders.py) only find files and check them; writing psf's layout is done once,
in psf.data.importers.import_dataset. Every check names the case and the file, so a user can fix the source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psf.data.dataset import DatasetError

# Channel or modality names that say what normalization a data set needs (psf's DATASET.md).
MR_NAMES = {"MR", "MRI", "T1", "T1W", "T2", "T2W", "FLAIR", "ADC", "DWI", "PD", "T1C", "T1GD", "T1CE", "T2F", "T1N",
            "T2STAR", "SWI", "HBV", "CBV", "PERFUSION"}
AFFINE_TOLERANCE_MM = 1e-3


@dataclass
class CaseData:
    """channels: one array per input channel, all the same shape ((x, y, z) volumes or (rows, cols) images);
    label: the raw label values, that shape; affine/header: the first channel's NIfTI geometry (None for 2D)."""

    channels: list[np.ndarray]
    label: np.ndarray
    affine: np.ndarray | None = None
    header: object | None = None


@dataclass(frozen=True)
class RawCase:
    name: str
    load: Callable[[], CaseData]


@dataclass
class RawDataset:
    """labels[i] names psf label i; values[i] is its value in the source's label files (values[0] = background)."""

    layout: str
    path: Path
    name: str
    modality: str
    channels: list[str]
    labels: list[str]
    values: list[int]
    file_ending: str
    cases: list[RawCase]
    fixed_test: list[RawCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def guess_modality(names: list[str]) -> str:
    """CT if any channel is CT, MR if all are MR sequences, US/XR by name, else other."""
    upper = [n.upper().replace("-", "").replace(" ", "") for n in names]
    if "CT" in upper:
        return "CT"
    if upper and all(n in MR_NAMES for n in upper):
        return "MR"
    if upper and all(n in ("US", "ULTRASOUND") for n in upper):
        return "US"
    if upper and all(n in ("XR", "XRAY", "CR", "DX") for n in upper):
        return "XR"
    return "other"


def read_volume(path: Path, case: str):
    """(array, affine, header) of a NIfTI file; a DatasetError naming the case for a missing or broken file."""
    import nibabel as nib

    if not path.is_file():
        raise DatasetError(f"case {case!r}: {path} is missing")
    try:
        img = nib.load(str(path))
        return np.asanyarray(img.dataobj), np.asarray(img.affine, dtype=np.float64), img.header
    except Exception as exc:  # nibabel raises many types for broken files
        raise DatasetError(f"case {case!r}: {path} is not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc


def check_same_grid(case: str, what: str, shape, affine, ref_shape, ref_affine) -> None:
    """`what` must have the reference's shape and (within 1 micrometre) its affine."""
    if tuple(shape) != tuple(ref_shape):
        raise DatasetError(f"case {case!r}: {what} has shape {tuple(shape)}, the image {tuple(ref_shape)}; they must match voxel for voxel")
    if affine is not None and ref_affine is not None and not np.allclose(affine, ref_affine, atol=AFFINE_TOLERANCE_MM):
        worst = float(np.abs(np.asarray(affine) - np.asarray(ref_affine)).max())
        raise DatasetError(f"case {case!r}: {what} has another geometry (affine differs by up to {worst:.4g} mm) than the image; "
                           "resample it onto the image's grid")


def consecutive_labels(case: str, label: np.ndarray, values: list[int], where: Path) -> np.ndarray:
    """Map source label values (values[i] -> i) to uint8 0..K-1; values not declared are an error naming them."""
    if label.dtype.kind == "f":
        if not np.all(np.equal(np.mod(label, 1), 0)):
            raise DatasetError(f"case {case!r}: {where} holds non-integer label values; a label map holds integers")
    found = np.unique(label).astype(np.int64)
    undeclared = sorted(set(found.tolist()) - set(values))
    if undeclared:
        raise DatasetError(f"case {case!r}: {where} holds label value(s) {undeclared} that the data set does not declare "
                           f"(declared: {sorted(values)}); fix the label file or declare them")
    lut = np.zeros(int(max(values)) + 1, dtype=np.uint8)
    lut[np.asarray(values, dtype=np.int64)] = np.arange(len(values), dtype=np.uint8)
    return lut[np.asarray(label, dtype=np.int64)]


def parse_label_names(text: str | None, count: int, where: str) -> list[str] | None:
    """--labels "background,liver,tumour" -> names; the count must match the data's labels."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(names) != count:
        raise DatasetError(f"--labels names {len(names)} labels ({', '.join(names)}), but {where} has {count} (background included)")
    return names
