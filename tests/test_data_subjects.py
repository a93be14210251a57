"""psf data mni152 --subjects: synthetic subjects split whole, every one sampled at the same axial positions."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from psf.data.subjects import subject_splits
from psf.errors import UsageError
from psf.train.data import slice_positions
from tests.conftest import run_cli


def test_subjects_differ_in_anatomy_share_positions_and_are_split_whole(tmp_path):
    run_cli("data", "mni152", str(tmp_path / "a"), "--subjects", "5", "--step", "30", check=True)
    manifest = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert [s["split"] for s in manifest["subjects"]] == ["train"] * 3 + ["val", "test"]
    files = {s: sorted((tmp_path / "a" / s / "images").iterdir()) for s in ("train", "val", "test")}
    assert [len(f) for f in files.values()] == [3, 1, 1]
    images = [nib.load(f) for fs in files.values() for f in fs]
    positions = [slice_positions(i.affine, i.shape[2]) for i in images]
    assert all(np.array_equal(positions[0], p) for p in positions[1:]) and np.allclose(np.diff(positions[0]), 30.0)
    labels = [np.asarray(nib.load(str(f).replace("images", "labels")).dataobj) for fs in files.values() for f in fs]
    assert all(set(np.unique(lab)) == {0, 1, 2} for lab in labels)  # grey and white matter in every subject
    # Anatomy differs between subjects (labels, not only intensities), but not wildly: most voxels agree.
    agreement = [(labels[0] == other).mean() for other in labels[1:]]
    assert all(0.6 < a < 0.99 for a in agreement), agreement
    assert manifest["counts"] == {"train": 3 * len(positions[0]), "val": len(positions[0]), "test": len(positions[0])}
    # The same seed gives the same subjects; another seed other ones.
    run_cli("data", "mni152", str(tmp_path / "b"), "--subjects", "5", "--step", "30", check=True)
    run_cli("data", "mni152", str(tmp_path / "c"), "--subjects", "5", "--step", "30", "--seed", "1", check=True)
    first = lambda root: np.asarray(nib.load(root / "train" / "labels" / "subject_00.nii.gz").dataobj)  # noqa: E731
    assert np.array_equal(first(tmp_path / "a"), first(tmp_path / "b"))
    assert not np.array_equal(first(tmp_path / "a"), first(tmp_path / "c"))


def test_subject_counts_are_checked():
    assert subject_splits(10) == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    with pytest.raises(UsageError, match="at least 3"):
        subject_splits(2)
    result = run_cli("data", "mni152", "/nonexistent-never-written", "--subjects", "3", "--centers", "2")
    assert result.returncode != 0 and "pick one" in result.stderr
