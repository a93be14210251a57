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


def test_failed_parity_check_leaves_no_bundle(tiny_model, tmp_path, monkeypatch):
    """A map graph whose weights were changed after export fails the real parity check, and neither a new
    bundle nor a staging folder is left behind; a bundle already at the target stays as it was."""
    import psf.export.onnx as export_onnx
    from psf.errors import PsfError

    finish = export_onnx._finish_onnx

    def finish_then_perturb(path, metadata):
        finish(path, metadata)
        if path.name == "map.onnx":  # scale the first weight tensor: a graph that no longer matches torch
            from onnx import numpy_helper

            model = onnx.load(str(path))
            init = next(t for t in model.graph.initializer if t.dims and len(t.dims) > 1)
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
            onnx.save(model, str(path))

    monkeypatch.setattr(export_onnx, "_finish_onnx", finish_then_perturb)
    with pytest.raises(PsfError, match="parity check failed: map.onnx"):
        export_onnx.export_bundle(tiny_model, tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "psf.json").write_text("{}")
    with pytest.raises(PsfError, match="parity check failed"):
        export_onnx.export_bundle(tiny_model, existing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert [p.name for p in existing.iterdir()] == ["psf.json"]


def test_export_refuses_to_replace_a_folder_that_is_not_a_bundle(tiny_model, tmp_path):
    """Export replaces its target whole, so a folder with other things in it (data, the checkpoint) is refused."""
    from psf.errors import PsfError
    from psf.export.onnx import export_bundle

    (tmp_path / "data").mkdir()
    with pytest.raises(PsfError, match="not a bundle folder .*data.*-o "):
        export_bundle(tiny_model, tmp_path)
    assert (tmp_path / "data").is_dir()
