"""The Triton model repository for a tritonserver fleet: configs parse against Triton's own schema,
the fp16 model computes what map.onnx computes, and only the map net is written."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from psf.manifest import load_manifest
from psf.runtime.ort import OrtRunner
from psf.serve.repository import RepositoryOptions, write_repository
from psf.serve.schema import WireSchema
from psf.errors import UsageError
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_repository_configs_parse_and_fp16_model_matches_map(tiny_bundle, tmp_path):
    manifest = load_manifest(tiny_bundle)
    folders = write_repository(manifest, tmp_path / "repo", RepositoryOptions(max_batch=32, instances=2, kind="KIND_CPU"))
    names = sorted(f.name for f in folders)
    assert names == sorted(WireSchema.for_bundle(manifest, w).model_name for w in ("fp16", "fp32"))
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == names  # nothing but the map models

    for folder in folders:
        config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        schema = WireSchema.for_bundle(manifest, folder.name.rsplit("_", 1)[1])
        assert config.name == folder.name and config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
        assert config.dynamic_batching.max_queue_delay_microseconds == 500
        assert config.instance_group[0].count == 2 and config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        wanted = model_config_pb2.TYPE_FP16 if schema.dtype == np.float16 else model_config_pb2.TYPE_FP32
        assert [(i.name, list(i.dims), i.data_type) for i in config.input] == [(schema.input_name, list(schema.input_shape), wanted)]
        assert [(o.name, list(o.dims), o.data_type) for o in config.output] == [(schema.output_name, list(schema.output_shape), wanted)]

    fp16 = WireSchema.for_bundle(manifest, "fp16")
    z = np.tanh(np.random.default_rng(0).normal(size=(3, *fp16.input_shape))).astype(np.float16)
    with OrtRunner(tmp_path / "repo" / fp16.model_name / "1" / "model.onnx") as wrapped, OrtRunner(manifest.path_of("map")) as plain:
        got = wrapped.infer({fp16.input_name: z})[fp16.output_name]
        want = plain.infer({fp16.input_name: z.astype(np.float32)})[fp16.output_name]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want, atol=1e-3)


def test_repository_refuses_to_overwrite_and_writes_engines_as_tensorrt_plan(tiny_bundle, tmp_path):
    manifest = load_manifest(tiny_bundle)
    write_repository(manifest, tmp_path / "repo")
    with pytest.raises(UsageError, match="--overwrite"):
        write_repository(manifest, tmp_path / "repo")
    # An engine entry as psf-build records it (the bytes are not run here: no TensorRT on this machine).
    (tiny_bundle.parent / "plan-copy").mkdir(exist_ok=True)
    manifest.engines = {"map": {"fp16": {"file": "../plan-copy/map.fp16.plan", "io_dtype": "float16"}}}
    (tiny_bundle.parent / "plan-copy" / "map.fp16.plan").write_bytes(b"engine bytes")
    folders = write_repository(manifest, tmp_path / "repo", RepositoryOptions(overwrite=True))
    plan_folder = [f for f in folders if f.name.endswith("_fp16_trt")][0]
    config = text_format.Parse((plan_folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "tensorrt_plan" and (plan_folder / "1" / "model.plan").read_bytes() == b"engine bytes"
    assert config.input[0].data_type == model_config_pb2.TYPE_FP16


def test_serve_write_repo_cli(tiny_bundle, tmp_path):
    result = run_cli("serve", str(tiny_bundle), "--write-repo", str(tmp_path / "repo"), "--repo-kind", "cpu", check=True)
    assert result.stdout.count("wrote Triton model") == 2
    assert "KIND_CPU" in next((tmp_path / "repo").glob("*_fp16/config.pbtxt")).read_text()
