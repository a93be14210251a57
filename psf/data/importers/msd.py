"""Medical Segmentation Decathlon tasks: dataset.json with modality {"0": "MRI", ...}, labels {"0": "background", ...}
and training [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...]. Multi-modal tasks store all
modalities of a case in one 4D NIfTI (modality on the 4th axis); they become one channel each."""

from __future__ import annotations

import json
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


def is_msd(src: Path) -> bool:
    path = src / "dataset.json"
    if not path.is_file():
        return False
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "training" in meta and "modality" in meta


def read_msd(src: Path) -> RawDataset:
    where = src / "dataset.json"
    meta = json.loads(where.read_text())
    modality = meta.get("modality")
    if not isinstance(modality, dict) or not modality:
        raise DatasetError(f"{where}: modality must name each input channel, e.g. {{\"0\": \"CT\"}}")
    channels = [str(modality[k]) for k in sorted(modality, key=int)]
    try:
        labels = {int(k): str(v) for k, v in meta["labels"].items()}
    except (KeyError, AttributeError, ValueError) as exc:
        raise DatasetError(f"{where}: labels must map values to names, e.g. {{\"0\": \"background\", \"1\": \"liver\"}}") from exc
    if 0 not in labels or len(labels) < 2:
        raise DatasetError(f"{where}: labels need value 0 (background) and at least one more")
    values = sorted(labels)
    cases, seen = [], set()
    for n, entry in enumerate(meta.get("training") or []):
        try:
            image, label = src / entry["image"], src / entry["label"]
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{where}: training entry {n} lacks 'image' or 'label'") from exc
        case = image.name.removesuffix(".gz").removesuffix(".nii")
        if case in seen:
            raise DatasetError(f"{where}: case {case!r} is listed twice in training")
        seen.add(case)
        for path in (image, label):
            if not path.is_file():
                raise DatasetError(f"case {case!r}: {path} is missing (listed in {where.name})")
        cases.append(RawCase(case, lambda case=case, image=image, label=label: _load(case, image, label, channels, values)))
    if not cases:
        raise DatasetError(f"{where}: the training list is empty")
    notes = []
    if meta.get("test"):
        notes.append(f"{len(meta['test'])} unlabelled test case(s) in imagesTs/ not imported; segment them with psf-infer")
    return RawDataset(layout="msd", path=src, name=str(meta.get("name") or src.name), modality=guess_modality(channels),
                      channels=channels, labels=[labels[v] for v in values], values=values, file_ending=".nii.gz",
                      cases=cases, notes=notes)


def _load(case: str, image_path: Path, label_path: Path, channels: list[str], values: list[int]) -> CaseData:
    data, affine, header = read_volume(image_path, case)
    if len(channels) > 1:
        if data.ndim != 4 or data.shape[3] != len(channels):
            raise DatasetError(f"case {case!r}: {image_path} has shape {data.shape}; with {len(channels)} modalities "
                               f"({', '.join(channels)}) it must be 4D with {len(channels)} volumes on the last axis")
        arrays = [data[..., c] for c in range(len(channels))]
    else:
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise DatasetError(f"case {case!r}: {image_path} has shape {data.shape}; a single-modality task has 3D images")
        arrays = [data]
    label, label_affine, _ = read_volume(label_path, case)
    check_same_grid(case, f"label {label_path.name}", label.shape, label_affine, arrays[0].shape, affine)
    return CaseData(arrays, consecutive_labels(case, label, values, label_path), affine, header)
