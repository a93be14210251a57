"""A tiny psf-layout data set written directly (no importer): blobs of K labels in C channels, 32 x 32 x 6."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def tiny_dataset(root: Path, labels: int = 3, channels: int = 1, modality: str = "MR", cases: int = 2,
                 size: int = 32, slices: int = 6, seed: int = 0) -> Path:
    import nibabel as nib

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    names = {"train": [f"c{i}" for i in range(cases)], "val": ["v0"], "test": ["t0"]}
    for split, cs in names.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for case in cs:
            label = np.zeros((size, size, slices), np.uint8)
            for k in range(1, labels):  # nested discs: label k inside radius r_k
                r = size * (0.45 - 0.35 * (k - 1) / max(1, labels - 1)) + rng.uniform(-1, 1)
                label[((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r)[..., None].repeat(slices, 2)] = k
            for c in range(channels):
                base = (label * (40 + 20 * c)).astype(np.float32) + rng.normal(0, 5, label.shape)
                if modality == "CT":
                    base = base * 10 - 1000 + 1000 * (label > 0)
                img = nib.Nifti1Image(base.astype(np.int16 if modality == "CT" else np.float32), np.eye(4))
                name = f"{case}_{c:04d}.nii.gz" if channels > 1 else f"{case}.nii.gz"
                nib.save(img, str(root / split / "images" / name))
            nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / split / "labels" / f"{case}.nii.gz"))
    info = {"format": "psf-dataset/1", "name": "tiny", "modality": modality,
            "channels": [f"ch{c}" for c in range(channels)], "labels": ["background"] + [f"l{k}" for k in range(1, labels)],
            "file_ending": ".nii.gz", "cases": names,
            "source": {"layout": "folders", "path": None, "split_seed": 0, "split_file": None}}
    (root / "dataset.json").write_text(json.dumps(info))
    return root
