"""Small test data sets of several modalities and layouts, derived from the real MNI152 template (nilearn).

Three tasks, each a few cases of 64 x 64 (x N slices), written in the layout users download them in:
    msd_ct_task(root)      CT-like volumes in Hounsfield units, binary label "brain", Medical Segmentation
                           Decathlon layout (imagesTr/, labelsTr/, dataset.json with modality/labels/training);
                           modalities=("FLAIR", "T1") writes a multi-modal MSD task instead (4D NIfTI, channels last)
    nnunet_mr_task(root)   2-channel MR (T1, T2-like), 4 labels (background, non_brain, grey_matter,
                           white_matter), nnU-Net v2 raw layout (imagesTr/CASE_0000.nii.gz, CASE_0001..., labelsTr/,
                           imagesTs/, dataset.json with channel_names/labels/file_ending)
    us_folder_task(root)   RGB ultrasound-like 2D frames (speckle, sector fan) in images/*.png and masks in
                           masks/*.png holding the values 0 / 128 (grey matter) / 255 (white matter)
Each takes well under 5 s (the template is read once per process and cached). The anatomy is the template's
at different axial levels with per-case intensity changes and noise, so a model has something real to learn.

Regenerate (e.g. to look at them in a viewer):
    python -m tests.data.factory OUT_DIR        # writes OUT_DIR/{Task90_CTBrain,Dataset901_MRTissue,us_frames}
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np

SIZE = 64            # in-plane voxels after taking every STRIDE-th template voxel around the centre
STRIDE = 3           # mm per in-plane voxel (template voxels are 1 mm)
Z_RANGE = (40, 150)  # template axial planes that hold brain


@functools.lru_cache(maxsize=1)
def template() -> dict:
    """The template on a coarse 3 mm in-plane grid: t1 (0..255 float32), p_gm, p_wm, labels (0/1/2), and the
    world position of voxel (0, 0, 0) and the 1 mm template affine."""
    from psf.data.mni152 import load_template, template_dir, tissue_labels

    affine, t1, gm, wm = load_template(template_dir())
    starts = [(t1.shape[a] - SIZE * STRIDE) // 2 for a in (0, 1)]
    cut = (slice(starts[0], starts[0] + SIZE * STRIDE, STRIDE), slice(starts[1], starts[1] + SIZE * STRIDE, STRIDE))
    t1c, gmc, wmc = (np.ascontiguousarray(v[cut].astype(np.float32)) for v in (t1, gm, wm))
    return {"t1": t1c, "gm": gmc, "wm": wmc, "labels": tissue_labels(gmc, wmc), "affine": affine, "starts": starts}


def case_affine(first_plane: int, step: int) -> np.ndarray:
    """Voxel -> world (mm) of a case whose slices are template planes first_plane, first_plane + step, ..."""
    t = template()
    affine = np.diag([float(STRIDE), float(STRIDE), float(step), 1.0])
    affine[:3, 3] = t["affine"][:3, :3] @ np.array([t["starts"][0], t["starts"][1], first_plane]) + t["affine"][:3, 3]
    return affine


def _planes(case: int, cases: int, slices: int) -> tuple[int, int]:
    """(first plane, step) of case `case`: cases spread over the brain, each `slices` planes 3 mm apart."""
    step = 3
    span = Z_RANGE[1] - Z_RANGE[0] - slices * step
    return Z_RANGE[0] + (span * case) // max(1, cases - 1), step


def _save(path: Path, volume: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(volume, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _case_volumes(case: int, cases: int, slices: int):
    first, step = _planes(case, cases, slices)
    t = template()
    z = slice(first, first + slices * step, step)
    return t["t1"][:, :, z], t["gm"][:, :, z], t["wm"][:, :, z], t["labels"][:, :, z], case_affine(first, step)


def msd_ct_task(root: Path, cases: int = 4, slices: int = 8, seed: int = 0,
                modalities: tuple[str, ...] = ("CT",), name: str = "Task90_CTBrain") -> Path:
    """ROOT/NAME in the MSD layout. Single modality "CT": int16 Hounsfield units (air -1000, white matter ~26,
    grey matter ~38, other head tissue ~15, noise sd 6 HU) and label 1 = brain (grey or white matter).
    Several modalities (e.g. ("FLAIR", "T1")): 4D float32 MR images, one volume per modality on the last axis."""
    rng = np.random.default_rng(seed)
    task = Path(root) / name
    training = []
    for i in range(cases):
        t1, gm, wm, labels, affine = _case_volumes(i, cases, slices)
        case = f"{name.split('_')[-1].lower()}_{i + 1:03d}"
        brain = (labels > 0).astype(np.uint8)
        if modalities == ("CT",):
            air = t1 < 12
            other = np.clip(1 - gm - wm, 0, 1)
            hu = np.where(air, -1000.0, 38 * gm + 26 * wm + 15 * other) + rng.normal(0, 6, t1.shape) + rng.uniform(-5, 5)
            image = np.round(hu).astype(np.int16)
        else:
            image = np.stack([_mr_contrast(t1, gm, wm, m, rng) for m in modalities], axis=-1).astype(np.float32)
        _save(task / "imagesTr" / f"{case}.nii.gz", image, affine)
        _save(task / "labelsTr" / f"{case}.nii.gz", brain, affine)
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    manifest = {
        "name": name, "description": "psf test factory: MNI152 template, CT-like", "tensorImageSize": "4D" if len(modalities) > 1 else "3D",
        "modality": {str(k): m for k, m in enumerate(modalities)}, "labels": {"0": "background", "1": "brain"},
        "numTraining": cases, "numTest": 0, "training": training, "test": [],
    }
    (task / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return task


def _mr_contrast(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A T1 (the template, gamma-varied) or a T2/FLAIR-like contrast (brain tissue inverted, CSF bright), scanner units."""
    head = t1 > 12
    if kind == "T1":
        x = (t1 / 255.0) ** rng.uniform(0.85, 1.15)
    else:
        x = np.where(head, 0.9 - 0.35 * gm - 0.6 * wm, 0.0)
    x = x * rng.uniform(800, 1200) + np.abs(rng.normal(0, 15, x.shape))
    return x.astype(np.float32)


NNUNET_LABELS = {"background": 0, "non_brain": 1, "grey_matter": 2, "white_matter": 3}


def nnunet_mr_task(root: Path, cases: int = 4, slices: int = 8, seed: int = 0, test_cases: int = 1,
                   name: str = "Dataset901_MRTissue") -> Path:
    """ROOT/NAME in the nnU-Net v2 raw layout: 2 channels (T1, T2), labels background / non_brain (head outside
    the brain) / grey_matter / white_matter; `test_cases` more cases in imagesTs/ (images only)."""
    rng = np.random.default_rng(seed)
    task = Path(root) / name
    total = cases + test_cases
    for i in range(total):
        t1, gm, wm, labels, affine = _case_volumes(i, total, slices)
        case = f"mr_{i + 1:03d}"
        folder = "imagesTr" if i < cases else "imagesTs"
        for c, kind in enumerate(("T1", "T2")):
            _save(task / folder / f"{case}_{c:04d}.nii.gz", _mr_contrast(t1, gm, wm, kind, rng), affine)
        if i < cases:
            four = np.where(labels > 0, labels + 1, (t1 > 12).astype(np.uint8)).astype(np.uint8)
            _save(task / "labelsTr" / f"{case}.nii.gz", four, affine)
    manifest = {"channel_names": {"0": "T1", "1": "T2"}, "labels": NNUNET_LABELS, "numTraining": cases,
                "file_ending": ".nii.gz", "name": name}
    (task / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return task


US_MASK_VALUES = {1: 128, 2: 255}  # template label -> value in the mask PNGs (grey matter 128, white matter 255)


def us_folder_task(root: Path, cases: int = 6, seed: int = 0, name: str = "us_frames") -> Path:
    """ROOT/NAME/images/frame_NNN.png (RGB, 64 x 64, speckled, inside a sector fan) and ROOT/NAME/masks/frame_NNN.png
    (8-bit grey, 0 / 128 / 255); one axial template plane per frame."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    task = Path(root) / name
    (task / "images").mkdir(parents=True, exist_ok=True)
    (task / "masks").mkdir(parents=True, exist_ok=True)
    t = template()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    angle = np.arctan2(xx - SIZE / 2, yy + 8)
    fan = (np.abs(angle) < 0.7) & (np.hypot(xx - SIZE / 2, yy + 8) < SIZE + 4)
    for i in range(cases):
        plane = Z_RANGE[0] + 10 + ((Z_RANGE[1] - Z_RANGE[0] - 20) * i) // max(1, cases - 1)
        grey = t["t1"][:, :, plane] * rng.rayleigh(0.8, (SIZE, SIZE)) * fan
        grey = np.clip(grey * rng.uniform(0.8, 1.1), 0, 255)
        rgb = np.stack([grey, grey * 0.97, np.clip(grey * 1.05, 0, 255)], axis=-1).astype(np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        for label, value in US_MASK_VALUES.items():
            mask[(t["labels"][:, :, plane] == label) & fan] = value
        Image.fromarray(rgb, mode="RGB").save(task / "images" / f"frame_{i:03d}.png")
        Image.fromarray(mask, mode="L").save(task / "masks" / f"frame_{i:03d}.png")
    return task


def write_all(root: Path) -> dict[str, Path]:
    """All three tasks under ROOT; returns {"msd_ct": ..., "nnunet_mr": ..., "us_folder": ...}."""
    return {"msd_ct": msd_ct_task(root), "nnunet_mr": nnunet_mr_task(root), "us_folder": us_folder_task(root)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.data.factory OUT_DIR")
    for kind, path in write_all(Path(sys.argv[1])).items():
        print(f"{kind}: {path}")
