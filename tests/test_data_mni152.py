"""The demo data set: label rule, split gaps, and geometry of the written volumes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from psf.data.mni152 import TEMPLATE_FILES, assign_splits, template_dir, tissue_labels


def test_label_rule_is_argmax_with_other_as_remainder():
    p_gm = np.array([0.6, 0.3, 0.1, 0.45, 0.0])
    p_wm = np.array([0.3, 0.6, 0.1, 0.45, 0.0])
    assert tissue_labels(p_gm, p_wm).tolist() == [1, 2, 0, 1, 0]


def test_no_test_or_val_slice_neighbours_a_training_slice():
    splits = assign_splits(189, block=10, gap=1)
    train = {i for i, s in enumerate(splits) if s == "train"}
    held_out = [i for i, s in enumerate(splits) if s in ("val", "test")]
    assert held_out and train
    assert min(min(abs(i - j) for j in train) for i in held_out) >= 3


def test_written_volumes_sit_where_the_template_slices_are(mni_data):
    meta = json.loads((mni_data / "dataset.json").read_text())
    assert meta["counts"]["test"] > 0 and meta["counts"]["train"] > meta["counts"]["test"]
    template = nib.load(template_dir() / TEMPLATE_FILES["t1"])
    volume = meta["volumes"][3]
    img = nib.load(mni_data / volume["split"] / "images" / volume["file"])
    start = volume["slices"][0]
    # Voxel (i, j, 0) of the block is voxel (i, j, start) of the template, in the same world position.
    np.testing.assert_allclose(img.affine @ [5, 7, 0, 1], template.affine @ [5, 7, start, 1])
    np.testing.assert_array_equal(np.asarray(img.dataobj)[:, :, 0], np.asarray(template.dataobj)[:, :, start])
    labels = np.asarray(nib.load(mni_data / volume["split"] / "labels" / volume["file"]).dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2}
