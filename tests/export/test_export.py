"""The exported bundle: four checked ONNX graphs, metadata, dynamic batch, parity with torch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from psf.manifest import load_manifest
from psf.runtime.ort import OrtRunner

pytestmark = pytest.mark.slow


def test_bundle_files_metadata_and_checker(tiny_bundle):
    manifest = load_manifest(tiny_bundle)
    assert set(manifest.stages) == {"encoder", "map", "decoder", "pipeline"}
    for stage, spec in manifest.stages.items():
        model = onnx.load(str(tiny_bundle / spec.file))
        onnx.checker.check_model(model, full_check=True)
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["psf.stage"] == stage
        assert meta["psf.input"] == spec.inputs[0].name and meta["psf.output"] == spec.outputs[0].name
        assert '"grey_matter"' in meta["psf.labels"]
    assert manifest.opset == 20


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_dynamic_batch(tiny_bundle, batch):
    manifest = load_manifest(tiny_bundle)
    with OrtRunner(manifest.path_of("pipeline")) as runner:
        probs = runner.infer({"image": np.random.default_rng(0).random((batch, 1, 256, 256), dtype=np.float32)})["probs"]
    assert probs.shape == (batch, 3, 256, 256)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


def test_parity_is_checked_and_reported(tiny_model, tmp_path):
    from psf.export.onnx import PARITY_TOLERANCE, export_bundle

    result = export_bundle(tiny_model, tmp_path / "b")
    assert set(result.parity) == {"encoder", "map", "decoder", "pipeline"}
    assert max(result.parity[s] for s in ("encoder", "map", "decoder")) <= PARITY_TOLERANCE
