"""nnU-Net v2 raw data sets: imagesTr/CASE_0000.nii.gz ..., labelsTr/CASE.nii.gz, optional imagesTs/ (and labelsTs/),
dataset.json with channel_names {"0": "T1", ...}, labels {"background": 0, "tumour": 1, ...} and file_ending."""

from __future__ import annotations

import json
import re
from pathlib import Path

from psf.data.dataset import DatasetError
from psf.data.importers.source import (
    CaseData,
    RawCase,
    RawDataset,
    check_same_grid,
    consecutive_labels,
    guess_modality,
    read_volume,
)

NIFTI_ENDINGS = (".nii.gz", ".nii")


def is_nnunet(src: Path) -> bool:
    meta = _json(src)
    return meta is not None and "channel_names" in meta


def _json(src: Path) -> dict | None:
    path = src / "dataset.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not readable JSON ({exc})") from exc
    return meta if isinstance(meta, dict) else None


def read_nnunet(src: Path) -> RawDataset:
    meta = _json(src) or {}
    where = src / "dataset.json"
    names = meta.get("channel_names") or meta.get("modality")
    if not isinstance(names, dict) or not names:
        raise DatasetError(f"{where}: no channel_names; an nnU-Net v2 dataset.json names its input channels")
    channels = [str(names[k]) for k in sorted(names, key=int)]
    labels = meta.get("labels")
    if not isinstance(labels, dict) or len(labels) < 2:
        raise DatasetError(f"{where}: labels must map at least two names to values, e.g. {{\"background\": 0, \"tumour\": 1}}")
    if any(not isinstance(v, int) for v in labels.values()):
        raise DatasetError(f"{where}: region-based labels (a list of values per name) are not supported; give one value per label")
    ordered = sorted(labels.items(), key=lambda kv: kv[1])
    if ordered[0][1] != 0:
        raise DatasetError(f"{where}: no label has value 0 (background); psf needs background = 0")
    ending = str(meta.get("file_ending", ".nii.gz"))
    if ending not in NIFTI_ENDINGS:
        raise DatasetError(f"{where}: file_ending {ending!r}; psf imports NIfTI nnU-Net data sets (.nii.gz, .nii); "
                           "for 2D images use the images/ + masks/ folder layout")
    values = [v for _, v in ordered]
    cases = _cases(src / "imagesTr", src / "labelsTr", channels, ending, values, required=True)
    fixed_test, notes = [], []
    if (src / "imagesTs").is_dir():
        if (src / "labelsTs").is_dir():
            fixed_test = _cases(src / "imagesTs", src / "labelsTs", channels, ending, values, required=True)
        else:
            count = len({_case_of(p.name, ending) for p in (src / "imagesTs").glob(f"*{ending}")} - {None})
            notes.append(f"{count} unlabelled case(s) in imagesTs/ not imported (no labelsTs/); segment them with psf-infer")
    return RawDataset(layout="nnunet-v2", path=src, name=str(meta.get("name") or src.name), modality=guess_modality(channels),
                      channels=channels, labels=[str(n) for n, _ in ordered], values=values, file_ending=".nii.gz",
                      cases=cases, fixed_test=fixed_test, notes=notes)


CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _case_of(filename: str, ending: str) -> str | None:
    match = CHANNEL_FILE.match(filename[: -len(ending)]) if filename.endswith(ending) else None
    return match["case"] if match else None


def _cases(images: Path, labels: Path, channels: list[str], ending: str, values: list[int], required: bool) -> list[RawCase]:
    """One RawCase per label file; every channel file must exist, and every image must have a label."""
    if not images.is_dir() or not labels.is_dir():
        raise DatasetError(f"{images.parent}: needs {images.name}/ and {labels.name}/ folders (nnU-Net v2 raw layout)")
    label_names = sorted(p.name[: -len(ending)] for p in labels.iterdir() if p.name.endswith(ending) and not p.name.startswith("."))
    image_cases = {_case_of(p.name, ending) for p in images.iterdir() if not p.name.startswith(".")} - {None}
    orphans = sorted(image_cases - set(label_names))
    if orphans:
        raise DatasetError(f"case {orphans[0]!r}: {images / (orphans[0] + '_0000' + ending)} has no label file in {labels}")
    if required and not label_names:
        raise DatasetError(f"{labels}: no label files ending in {ending}")
    out = []
    for case in label_names:
        files = [images / f"{case}_{c:04d}{ending}" for c in range(len(channels))]
        for c, path in enumerate(files):
            if not path.is_file():
                raise DatasetError(f"case {case!r}: channel {c} ({channels[c]}) file {path} is missing")
        out.append(RawCase(case, lambda case=case, files=files: _load(case, files, labels / f"{case}{ending}", values)))
    return out


def _load(case: str, files: list[Path], label_path: Path, values: list[int]) -> CaseData:
    arrays = []
    ref_shape = ref_affine = header = None
    for c, path in enumerate(files):
        data, affine, hdr = read_volume(path, case)
        if data.ndim != 3:
            raise DatasetError(f"case {case!r}: {path} is {data.ndim}D {data.shape}; nnU-Net channel files are 3D volumes")
        if c == 0:
            ref_shape, ref_affine, header = data.shape, affine, hdr
        else:
            check_same_grid(case, f"channel {c} ({path.name})", data.shape, affine, ref_shape, ref_affine)
        arrays.append(data)
    label, affine, _ = read_volume(label_path, case)
    check_same_grid(case, f"label {label_path.name}", label.shape, affine, ref_shape, ref_affine)
    return CaseData(arrays, consecutive_labels(case, label, values, label_path), ref_affine, header)
