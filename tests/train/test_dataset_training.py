"""Labels, channels and normalization come from the data set (dataset.json) into model.pt and model.json."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from psf.errors import PsfError
from tests.train.tiny import tiny_dataset


def test_ct_task_with_two_channels_and_four_labels(tmp_path):
    from psf.models.config import ModelConfig
    from psf.train.run import TrainOptions, run_training

    data = tiny_dataset(tmp_path / "data", labels=4, channels=2, modality="CT")
    result = run_training(TrainOptions(data=data, out=tmp_path / "m.pt", model=ModelConfig(image_size=32, client_width=4, map_width=4),
                                       views=1, quiet=True, min_ceiling=0.0, stage_steps={"image_ae": 2, "mask_ae": 2, "mapping": 2}))
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ckpt["config"]["in_channels"] == 2 and ckpt["config"]["num_classes"] == 4
    assert ckpt["labels"] == ["background", "l1", "l2", "l3"] and ckpt["channels"] == ["ch0", "ch1"] and ckpt["modality"] == "CT"
    specs = ckpt["normalization"]
    assert [s["method"] for s in specs] == ["ct", "ct"]
    # foreground statistics of the training split: tiny_dataset's channel 1 is brighter than channel 0
    assert specs[1]["mean"] > specs[0]["mean"] and all(s["clip"][0] < s["mean"] < s["clip"][1] for s in specs)
    assert set(result["metrics"]["test"]["dice"]) == {"background", "l1", "l2", "l3"}
    cases = result["evaluation"]["cases"]  # per case and label, psf.eval's report
    assert list(cases) == ["t0"] and set(cases["t0"]["labels"]) == {"l1", "l2", "l3"}


def test_a_label_value_the_data_set_does_not_declare_is_refused_naming_the_file(tmp_path):
    from psf.train.data import dataset_info, load_split

    data = tiny_dataset(tmp_path / "data", labels=3)
    path = data / "val" / "labels" / "v0.nii.gz"
    label = np.asarray(nib.load(path).dataobj).copy()
    label[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(path))
    with pytest.raises(PsfError, match=r"v0.nii.gz: label values 0..7, the data set declares 3 labels"):
        load_split(data, "val", 32, {"method": "percentile", "lower": 0.5, "upper": 99.5}, info=dataset_info(data))
