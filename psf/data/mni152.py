"""A 2D tissue-segmentation data set from the MNI152 (ICBM 2009a sym) T1 template shipped inside nilearn.

Label rule (per voxel), from nilearn's grey/white-matter probability maps p_gm, p_wm in [0, 1]:
    p_other = max(0, 1 - p_gm - p_wm)            # background, CSF, skull, scalp
    label   = argmax(p_other, p_gm, p_wm)        # 0 other, 1 grey matter, 2 white matter; ties -> lower
So a voxel is grey or white matter only where that tissue is the most probable class.

Split: axial slices (third voxel axis) are cut into blocks of `block` slices that cycle through
SPLIT_CYCLE; a slice closer than `gap` slices to a slice of another split is dropped, so no test or
validation slice neighbours a training slice. Each kept run of slices is written as its own NIfTI volume
(image and label) whose affine is the template's, shifted to the run's first slice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psf.errors import MissingDependency, PsfError
from psf.io.nifti import write_nifti
from psf.io.scan import Geometry

LABELS = ("other", "grey_matter", "white_matter")
SPLIT_CYCLE = ("train", "train", "val", "train", "train", "test")
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def template_dir() -> Path:
    """nilearn's bundled data folder (inside the installed wheel; nothing is downloaded)."""
    try:
        import nilearn
    except ImportError as exc:
        raise MissingDependency("nilearn (ships the MNI152 template)", "train") from exc
    folder = Path(nilearn.__file__).parent / "datasets" / "data"
    missing = [n for n in TEMPLATE_FILES.values() if not (folder / n).is_file()]
    if missing:
        raise PsfError(f"nilearn at {folder} lacks {missing}; reinstall nilearn (pip install --force-reinstall nilearn)")
    return folder


def tissue_labels(p_gm: np.ndarray, p_wm: np.ndarray) -> np.ndarray:
    """The module's label rule, vectorised: uint8 labels 0/1/2 from probabilities in [0, 1]."""
    p_other = np.clip(1.0 - p_gm - p_wm, 0.0, None)
    return np.argmax(np.stack([p_other, p_gm, p_wm]), axis=0).astype(np.uint8)


def assign_splits(n_slices: int, block: int, gap: int) -> list[str | None]:
    """Split name per slice (None for dropped gap slices); see the module docstring."""
    split = [SPLIT_CYCLE[(i // block) % len(SPLIT_CYCLE)] for i in range(n_slices)]
    kept: list[str | None] = []
    for i, name in enumerate(split):
        window = split[max(0, i - gap) : i + gap + 1]
        kept.append(name if all(s == name for s in window) else None)
    return kept


def runs(splits: list[str | None]) -> list[tuple[str, int, int]]:
    """Maximal runs of consecutive slices with one split: (split, start, stop)."""
    out: list[tuple[str, int, int]] = []
    start = 0
    for i in range(1, len(splits) + 1):
        if i == len(splits) or splits[i] != splits[start]:
            if splits[start] is not None:
                out.append((splits[start], start, i))
            start = i
    return out


def _per_block(spans: list[tuple[str, int, int]], block: int) -> list[tuple[str, int, int]]:
    """Cut runs at block boundaries, so training blocks can go to different centers."""
    out = []
    for split, start, stop in spans:
        edges = sorted({start, stop, *range((start // block + 1) * block, stop, block)})
        out += [(split, a, b) for a, b in zip(edges, edges[1:])]
    return out


def load_template(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(affine, T1 as stored, p_gm, p_wm in [0, 1]) of the template in nilearn's `folder`."""
    import nibabel as nib

    t1 = nib.load(str(folder / TEMPLATE_FILES["t1"]))
    gm, wm = (np.asarray(nib.load(str(folder / TEMPLATE_FILES[t])).dataobj, dtype=np.float32) / 255.0 for t in ("gm", "wm"))
    return t1.affine, np.asarray(t1.dataobj), gm, wm


def template_sources(folder: Path) -> dict:
    """The template files a data set was built from, with their digests (for its dataset.json)."""
    return {k: {"file": v, "sha256": _sha256(folder / v)} for k, v in TEMPLATE_FILES.items()}


def write_slab(out: Path, split: str, name: str, image: np.ndarray, labels: np.ndarray, template_affine: np.ndarray,
               first: int, step: int = 1) -> None:
    """OUT/SPLIT/{images,labels}/NAME: axial slices whose affine is the template's, moved to slice `first`, with
    `step` template slices between consecutive planes."""
    affine = template_affine.copy()
    affine[:3, 3] = template_affine[:3, :3] @ np.array([0, 0, first]) + template_affine[:3, 3]
    affine[:3, 2] *= step
    geometry = Geometry(affine=affine, qform=affine, qform_code=4, sform=affine, sform_code=4)
    write_nifti(out / split / "images" / name, image, geometry)
    write_nifti(out / split / "labels" / name, labels, geometry)


@dataclass(frozen=True)
class BuiltDataset:
    root: Path
    counts: dict[str, int]


def build_mni152(out: Path, block: int = 10, gap: int = 1, acquisition: Callable[[np.ndarray], np.ndarray] | None = None,
                 keep_train_block: Callable[[int], bool] | None = None, extra: dict | None = None) -> BuiltDataset:
    """Write OUT/{train,val,test}/{images,labels}/mni152_zSSS-EEE.nii.gz and OUT/dataset.json.

    acquisition: turns the template T1 into what another scanner would record (psf.data.centers);
    keep_train_block: which training blocks (by their order, 0 = the first) this data set keeps."""
    if block < 1 or gap < 0:
        raise PsfError(f"--block must be >= 1 and --gap >= 0, got block={block} gap={gap}")
    folder = template_dir()
    template_affine, t1_data, gm, wm = load_template(folder)
    if acquisition is not None:
        t1_data = acquisition(t1_data.astype(np.float32)).astype(np.float32)
    labels = tissue_labels(gm, wm)
    splits = assign_splits(t1_data.shape[2], block, gap)
    counts = {"train": 0, "val": 0, "test": 0}
    volumes = []
    train_blocks = 0
    for split, start, stop in _per_block(runs(splits), block) if keep_train_block else runs(splits):
        if split == "train" and keep_train_block is not None:
            train_blocks += 1
            if not keep_train_block(train_blocks - 1):
                continue
        name = f"mni152_z{start:03d}-{stop - 1:03d}.nii.gz"
        write_slab(out, split, name, t1_data[:, :, start:stop], labels[:, :, start:stop], template_affine, start)
        counts[split] += stop - start
        volumes.append({"split": split, "file": name, "slices": [start, stop]})
    details = {
        "template": template_sources(folder),
        "label_rule": "argmax(max(0, 1 - p_gm - p_wm), p_gm, p_wm); ties -> lower label",
        "slice_axis": 2,
        "block": block,
        "gap": gap,
        "counts": counts,
        "volumes": volumes,
        **(extra or {}),
    }
    cases = {s: [v["file"].removesuffix(".nii.gz") for v in volumes if v["split"] == s] for s in ("train", "val", "test")}
    write_dataset_json(out, "mni152-tissue", cases, details)
    return BuiltDataset(root=out, counts=counts)


def write_dataset_json(out: Path, name: str, cases: dict[str, list[str]], details: dict, seed: int | None = None) -> None:
    """OUT/dataset.json in psf's data-set format (psf.data.dataset; MR, one channel T1, this module's LABELS), with
    the builder's own `details` (template digests, label rule, splits) kept beside the standard keys."""
    from psf.data.dataset import DatasetInfo

    DatasetInfo(root=out, name=name, modality="MR", channels=["T1"], labels=list(LABELS), file_ending=".nii.gz", cases=cases,
                source={"layout": "mni152", "path": None, "split_seed": seed, "split_file": None}, extra=details).save()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
