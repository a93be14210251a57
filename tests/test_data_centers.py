"""psf data mni152 --centers: simulated hospitals with their own acquisition and their own training anatomy."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from psf.pipeline.preprocess import DEFAULT_NORMALIZATION, normalize
from tests.conftest import run_cli


def test_centers_split_training_blocks_and_differ_in_acquisition(tmp_path, mni_data):
    run_cli("data", "mni152", str(tmp_path), "--centers", "3", check=True)
    names = ["center_a", "center_b", "center_c"]
    train = {c: sorted(p.name for p in (tmp_path / c / "train" / "images").iterdir()) for c in names}
    everything = sorted(p.name for p in (mni_data / "train" / "images").iterdir())
    # Disjoint training anatomy, together less than or equal to the single data set's (blocks are cut finer).
    assert all(train[c] for c in names)
    assert not (set(train["center_a"]) & set(train["center_b"])) and not (set(train["center_b"]) & set(train["center_c"]))
    single_slices = sum(nib.load(mni_data / "train" / "images" / n).shape[2] for n in everything)
    center_slices = sum(nib.load(tmp_path / c / "train" / "images" / n).shape[2] for c in names for n in train[c])
    assert center_slices == single_slices
    # Same test anatomy everywhere, recorded differently (and the labels are the same).
    test_name = sorted(p.name for p in (tmp_path / "center_a" / "test" / "images").iterdir())[1]
    images = [np.asarray(nib.load(tmp_path / c / "test" / "images" / test_name).dataobj, dtype=np.float32) for c in names]
    labels = [np.asarray(nib.load(tmp_path / c / "test" / "labels" / test_name).dataobj) for c in names]
    assert all(np.array_equal(labels[0], other) for other in labels[1:])
    normalized = [normalize(i, DEFAULT_NORMALIZATION) for i in images]  # what the model sees: still different
    assert all(np.abs(normalized[0] - other).mean() > 0.01 for other in normalized[1:])
    assert len({round(float(np.percentile(i, 99)), 1) for i in images}) == 3  # three scanners' units
    described = json.loads((tmp_path / "center_b" / "dataset.json").read_text())["acquisition"]
    assert described["blur_voxels"] > 0 and described["contrast"] < 1
    assert set(json.loads((tmp_path / "centers.json").read_text())["centers"]) == set(names)
