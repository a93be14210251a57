"""Shared fixtures: the real MNI152 data set and a tiny model trained in seconds, exported once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY_SIZES = dict(client_width=8, map_width=8, image_latent=4, mask_latent=3)


def pytest_collection_modifyitems(config, items):
    has_cuda = shutil.which("nvidia-smi") is not None
    try:
        import tensorrt  # noqa: F401
        has_trt = True
    except ImportError:
        has_trt = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (nvidia-smi not found)"))
        if "trt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT (import tensorrt failed)"))


@pytest.fixture(scope="session")
def mni_data(tmp_path_factory) -> Path:
    from psf.data.mni152 import build_mni152

    root = tmp_path_factory.mktemp("mni152")
    build_mni152(root)
    return root


@pytest.fixture(scope="session")
def tiny_model(mni_data, tmp_path_factory) -> Path:
    """A small Privacy-SF model trained for ~40 s on the real demo data.

    The budget is in epochs, not minutes, so the model (and every threshold tested on it) does not
    depend on how busy the machine is.
    """
    from psf.models.config import ModelConfig
    from psf.train.run import TrainOptions, run_training

    out = tmp_path_factory.mktemp("model") / "model.pt"
    run_training(TrainOptions(data=mni_data, out=out, model=ModelConfig(**TINY_SIZES), minutes=None,
                              stage_epochs={"image_ae": 16, "mask_ae": 10, "mapping": 90}, views=3,
                              seed=0, quiet=True))
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model, mni_data) -> Path:
    """The tiny model's bundle with every precision: fp32, fp16 and both int8 files (calibrated on train images)."""
    from psf.export.calibration import calibration_slices
    from psf.export.onnx import export_bundle
    from psf.pipeline.preprocess import DEFAULT_NORMALIZATION

    out = tiny_model.parent / "bundle"
    calib = calibration_slices(mni_data / "train" / "images", 256, DEFAULT_NORMALIZATION, 32)
    export_bundle(tiny_model, out, precisions=("fp32", "fp16", "int8"), calibration=calib, calibration_source="train images")
    return out


def run_cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m psf.cli.main ARGS` in a fresh process (the way users run it)."""
    result = subprocess.run([sys.executable, "-m", "psf", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"psf {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
