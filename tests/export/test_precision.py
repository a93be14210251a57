"""fp16 and int8 ONNX variants: what each file contains, how far each is from fp32, and psf-infer --precision."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto

from psf.errors import BundleError, UsageError
from psf.export.precision import symmetric_zero_points
from psf.manifest import load_manifest, verify_file
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
STAGES = ("encoder", "map", "decoder", "pipeline")


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_every_variant_is_recorded_hashed_and_checked(tiny_bundle):
    manifest = load_manifest(tiny_bundle)
    assert set(manifest.variants) == {"fp16", "int8", "int8-cpu"}
    for variant, files in manifest.variants.items():
        assert set(files) == set(STAGES)
        for stage in STAGES:
            path = verify_file(manifest, stage, variant)
            assert path.name == f"{stage}.{variant}.onnx"
            model = onnx.load(str(path))
            onnx.checker.check_model(model)
            assert {p.key: p.value for p in model.metadata_props}["psf.precision"] == variant
            # fp32 at the boundary: the runtime and the wire see the same tensors for every precision
            assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
            assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT]


def test_fp16_weights_are_half_and_int8_files_are_qdq(tiny_bundle):
    manifest = load_manifest(tiny_bundle)
    # BatchNorm was folded into the convolutions in fp32 before any conversion: no normalization overflows in fp16
    assert not any("BatchNormalization" in _ops(manifest.path_of(s, v)) for s in STAGES for v in ("fp32", "fp16", "int8"))
    fp16 = onnx.load(str(manifest.path_of("map", "fp16")))
    conv_weights = {n.input[1] for n in fp16.graph.node if n.op_type == "Conv"}
    types = {t.name: t.data_type for t in fp16.graph.initializer if t.name in conv_weights}
    assert types and set(types.values()) == {TensorProto.FLOAT16}
    for variant in ("int8", "int8-cpu"):
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= _ops(manifest.path_of("pipeline", variant))
    # TensorRT needs zero zero points; the CPU file uses uint8 activations with real zero points.
    assert all(symmetric_zero_points(manifest.path_of(s, "int8")) for s in STAGES)
    assert not symmetric_zero_points(manifest.path_of("pipeline", "int8-cpu"))


def test_accuracy_against_fp32_is_recorded_and_small(tiny_bundle):
    info = load_manifest(tiny_bundle).variant_info
    assert info["fp16"]["vs_fp32"]["pipeline"]["argmax_changed"] < 0.001
    assert info["fp16"]["vs_fp32"]["encoder"]["median_abs"] < 1e-3
    for variant in ("int8", "int8-cpu"):
        assert info[variant]["vs_fp32"]["pipeline"]["argmax_changed"] < 0.03
        assert info[variant]["calibration"]["slices"] == 32
    assert info["int8"]["calibration"]["activations"] == "int8 symmetric"


@pytest.mark.parametrize("precision,limit", [("fp16", 0.002), ("int8", 0.02)])
def test_psf_infer_precision_costs_little_dice(tiny_bundle, mni_data, tmp_path, precision, limit):
    scores = {}
    for p in ("fp32", precision):
        out = tmp_path / p
        run_cli("infer", "--engine", str(tiny_bundle), str(mni_data / "test" / "images"), "-o", str(out), "--precision", p,
                "-q", check=True)
        line = run_cli("score", str(out), str(mni_data / "test" / "labels"), check=True).stdout
        scores[p] = float(line.split("mean=")[1].split()[0])
    assert scores[precision] >= scores["fp32"] - limit, scores


def test_missing_variant_names_the_export_command(tiny_model, tmp_path):
    from psf.export.onnx import export_bundle

    manifest = export_bundle(tiny_model, tmp_path / "fp32only").manifest
    assert manifest.variants == {}
    with pytest.raises(BundleError, match="--precision fp32,fp16,int8"):
        verify_file(manifest, "pipeline", "fp16")
    result = run_cli("infer", "--engine", str(tmp_path / "fp32only"), str(tmp_path), "--precision", "int8")
    assert result.returncode == 1 and "no int8-cpu ONNX" in result.stderr


def test_calibration_folder_errors_name_the_folder(tmp_path):
    from psf.export.calibration import calibration_slices

    with pytest.raises(UsageError, match=str(tmp_path)):
        calibration_slices(tmp_path, 256, {"method": "percentile", "lower": 0.5, "upper": 99.5}, 8)
    with pytest.raises(UsageError, match="calibration-slices"):
        calibration_slices(tmp_path, 256, {}, 0)


def test_export_cli_rejects_unknown_precision(tiny_model, tmp_path):
    result = run_cli("export", str(tiny_model), "-o", str(tmp_path / "b"), "--precision", "fp32,bf16")
    assert result.returncode == 1 and "--precision 'fp32,bf16'" in result.stderr
    assert not (tmp_path / "b").exists()


def test_manifest_round_trips_variants(tiny_bundle):
    manifest = load_manifest(tiny_bundle)
    data = json.loads(manifest.to_json())
    assert data["variants"]["int8"]["map"]["file"] == "map.int8.onnx"
    assert load_manifest(tiny_bundle).variants == manifest.variants
