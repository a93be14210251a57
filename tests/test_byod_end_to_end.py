"""Bring your own data, end to end, for three modalities and layouts (issue 14, item 8):
raw task (tests/data/factory.py) -> psf data import -> psf-train (a few hundred tiny steps) -> psf-export ->
psf-infer -> psf score. Each asserts the labels and channels the bundle carries, the masks' label range, a
Dice floor that a broken pipeline (wrong channel order, normalization or label mapping) would miss, and that
psf-infer's masks score what training measured in torch (same preprocessing on both sides).
"""

from __future__ import annotations


import numpy as np
import pytest

from tests.conftest import run_cli
from tests.data import factory

pytestmark = pytest.mark.slow

# task -> (factory function, import options, data-set labels, channels, Dice floor on the mean over foreground labels).
# Floors: about half of what these budgets reach here (CT 0.96, US 0.58, MR 0.44), and above a uniform random
# guess (CT ~0.4, US ~0.3, MR ~0.19).
TASKS = {
    "ct-msd": (factory.msd_ct_task, {}, ["background", "brain"], 1, 0.8),
    "mr-nnunet": (factory.nnunet_mr_task, {}, ["background", "non_brain", "grey_matter", "white_matter"], 2, 0.3),
    "us-folders": (factory.us_folder_task, {"modality": "US"}, None, 1, 0.35),
}
TINY = dict(image_size=64, patch=2, client_width=8, map_width=8, image_latent=4, mask_latent=4)
STEPS = {"image_ae": 100, "mask_ae": 200, "mapping": 100}


@pytest.mark.parametrize("task", list(TASKS))
def test_import_train_export_infer_score(task, tmp_path):
    from psf.data.importers import ImportOptions, import_dataset
    from psf.export.onnx import export_bundle
    from psf.manifest import load_manifest
    from psf.models.config import ModelConfig
    from psf.train.run import TrainOptions, run_training

    make, import_options, labels, channels, floor = TASKS[task]
    raw = make(tmp_path / "raw")
    info = import_dataset(raw, tmp_path / "data", ImportOptions(quiet=True, **import_options))
    labels = labels or info.labels
    assert info.labels == labels and len(info.channels) == channels
    model = tmp_path / "model.pt"
    trained = run_training(TrainOptions(data=tmp_path / "data", out=model, model=ModelConfig(**TINY), views=2, seed=0,
                                        quiet=True, min_ceiling=0.0, stage_steps=STEPS, threads=1))
    assert trained["training"]["dataset"]["labels"] == labels
    export_bundle(model, tmp_path / "bundle", quiet=True)
    manifest = load_manifest(tmp_path / "bundle")
    assert manifest.labels == labels and manifest.in_channels == channels and len(manifest.channels) == channels
    assert (manifest.modality == "CT") == (task == "ct-msd")
    if task == "ct-msd":  # training-set foreground statistics, recorded for psf-infer
        assert manifest.normalization["method"] == "ct" and manifest.normalization["std"] > 0

    out = tmp_path / "out"
    run_cli("infer", "--engine", str(tmp_path / "bundle" / "pipeline.onnx"), str(tmp_path / "data" / "test" / "images"),
            "-o", str(out), "-q", check=True)
    masks = sorted(p for p in out.iterdir() if "_mask" in p.name)
    assert len(masks) == len(info.cases["test"])
    from psf.io import read_scan

    values = np.unique(np.concatenate([np.unique(read_scan(m).pixels) for m in masks]))
    assert values.min() >= 0 and values.max() <= len(labels) - 1 and len(values) >= 2, values
    scored = run_cli("score", str(out), str(tmp_path / "data" / "test" / "labels"), check=True).stdout
    mean = float(scored.split("mean=")[1].split()[0])
    assert mean > floor, (task, scored)
    # psf-infer (ONNX Runtime, psf.pipeline) scores what training measured in torch on the same test cases
    assert abs(mean - trained["metrics"]["test"]["mean_dice"]) < 0.02, (scored, trained["metrics"]["test"])
