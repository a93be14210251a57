"""Demo subjects: the MNI152 template deformed into several synthetic brains, split by subject.

The demo data set is one brain: its held-out slices are neighbours of its training slices, so a membership game
on it compares slices of different anatomy (psf-audit's per-block blind baselines read 0.00-0.60 on it). Here
each subject is the template under its own smooth random deformation (a random affine about the volume's centre,
scale +-SCALE per axis and rotation +-ROTATION_DEG about the slice axis, plus a displacement field drawn on a coarse
grid, DISPLACEMENT_MM per component) and its own intensity gamma; the grey/white-matter probabilities go through
the same deformation before the label rule of psf.data.mni152. Subjects are split whole (train / val / test), and
every subject is sampled at the same axial positions (every `step` slices through the brain), so a held-out
slice and the training slices at its position are drawn the same way: membership by subject, with members and
non-members exchangeable as images. (Not necessarily as latents: the client autoencoders train on the training
subjects only; psf-audit's blind baseline shows what that gives away.) Anatomy varies only as far as these
deformations reach; it is no substitute for real subjects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.data.mni152 import load_template, template_dir, template_sources, tissue_labels, write_dataset_json, write_slab
from psf.errors import UsageError

SCALE = 0.06
ROTATION_DEG = 4.0
DISPLACEMENT_MM = 3.0
COARSE_GRID = (5, 6, 5)
GAMMA = (0.85, 1.15)


def subject_splits(count: int) -> list[str]:
    """Split per subject: a fifth each (at least one) to val and test, the rest to train; held-out subjects last."""
    if count < 3:
        raise UsageError(f"--subjects {count}: need at least 3 (one each for train, val and test)")
    held_out = max(1, round(count / 5))
    return ["train"] * (count - 2 * held_out) + ["val"] * held_out + ["test"] * held_out


def _warp(shape: tuple[int, int, int], planes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Source voxel coordinates (3, X, Y, P) of each output voxel on `planes`, and the parameters drawn."""
    from scipy.ndimage import map_coordinates

    centre = (np.array(shape) - 1) / 2.0
    scale = 1.0 + rng.uniform(-SCALE, SCALE, 3)
    angle = np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    grid = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), planes, indexing="ij")).astype(np.float32)
    offset = grid.reshape(3, -1) - centre[:, None]
    source = (rotation * scale[None, :]) @ offset + centre[:, None]  # output -> source: rotate, then scale
    coarse = rng.normal(0.0, DISPLACEMENT_MM, (3, *COARSE_GRID))     # 1 mm voxels: mm = voxels
    at = grid.reshape(3, -1) * ((np.array(COARSE_GRID) - 1) / (np.array(shape) - 1))[:, None]
    source += np.stack([map_coordinates(c, at, order=3, mode="nearest") for c in coarse])
    return source.reshape(grid.shape), {"scale": scale.round(4).tolist(), "rotation_deg": round(float(np.rad2deg(angle)), 3)}


def build_subjects(out: Path, count: int = 10, step: int = 8, seed: int = 0) -> dict[str, int]:
    """Write OUT/{train,val,test}/{images,labels}/subject_NN.nii.gz (one volume of axial planes per subject) and
    OUT/dataset.json; returns slices per split."""
    from scipy.ndimage import map_coordinates

    if step < 1:
        raise UsageError(f"--step {step}: must be >= 1")
    splits = subject_splits(count)
    folder = template_dir()
    template_affine, t1, gm, wm = load_template(folder)
    volumes = {"t1": t1.astype(np.float32), "gm": gm, "wm": wm}
    brain = np.flatnonzero(tissue_labels(volumes["gm"], volumes["wm"]).any((0, 1)))
    planes = np.arange(brain[0], brain[-1] + 1, step)
    top = float(np.percentile(volumes["t1"], 99.9)) or 1.0
    rng = np.random.default_rng(seed)
    counts, subjects = {"train": 0, "val": 0, "test": 0}, []
    for index, split in enumerate(splits):
        source, params = _warp(volumes["t1"].shape, planes, rng)
        params["gamma"] = round(float(rng.uniform(*GAMMA)), 4)
        warped = {k: map_coordinates(v, source.reshape(3, -1), order=1, mode="constant").reshape(source.shape[1:])
                  for k, v in volumes.items()}
        image = top * np.clip(warped["t1"] / top, 0, None) ** params["gamma"]
        labels = tissue_labels(np.clip(warped["gm"], 0, 1), np.clip(warped["wm"], 0, 1))
        name = f"subject_{index:02d}.nii.gz"
        write_slab(out, split, name, image.astype(np.float32), labels, template_affine, int(planes[0]), step)
        counts[split] += len(planes)
        subjects.append({"file": name, "split": split, **params})
    details = {
        "template": template_sources(folder),
        "label_rule": "argmax(max(0, 1 - p_gm - p_wm), p_gm, p_wm) after the subject's deformation; ties -> lower label",
        "slice_axis": 2,
        "planes": planes.tolist(),
        "step": step,
        "seed": seed,
        "deformation": {"scale": SCALE, "rotation_deg": ROTATION_DEG, "displacement_mm": DISPLACEMENT_MM,
                        "coarse_grid": list(COARSE_GRID), "gamma": list(GAMMA)},
        "counts": counts,
        "subjects": subjects,
    }
    cases = {s: [x["file"].removesuffix(".nii.gz") for x in subjects if x["split"] == s] for s in ("train", "val", "test")}
    write_dataset_json(out, "mni152-subjects", cases, details, seed=seed)
    return counts
