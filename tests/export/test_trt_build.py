"""psf-build and the TensorRT runtime's checks: everything around the TensorRT calls, run without a GPU;
the real build, verify and inference at the end need TensorRT and a GPU and are skipped here with the reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from psf.errors import BundleError, EngineMismatch, UsageError
from psf.export.trt_build import BuildOptions, build_failure, check_dla, dla_available, engine_entry, parse_batch, plan_builds
from psf.manifest import Manifest, load_manifest, sha256_file
from psf.registry import GRAPHS
from psf.runtime.engines import check_engine, engine_file, engine_precision, rebuild_command, resolve_engine_precision
from tests.conftest import run_cli

try:
    import tensorrt  # noqa: F401
    HAS_TRT = True
except ImportError:
    HAS_TRT = False


@pytest.mark.parametrize("text,expected", [("1:16:64", (1, 16, 64)), ("8", (8, 8, 8)), ("1:1:1024", (1, 1, 1024))])
def test_parse_batch(text, expected):
    assert parse_batch(text) == expected


@pytest.mark.parametrize("text", ["0:1:2", "4:2:8", "1:2", "a:b:c", "2048", "1:16:2000"])
def test_parse_batch_refuses(text):
    with pytest.raises(UsageError, match="MIN:OPT:MAX"):
        parse_batch(text)


@pytest.mark.parametrize("options,message", [
    (BuildOptions(dla_core=0, batch=(1, 16, 64)), "fixed shapes"),
    (BuildOptions(dla_core=0, batch=(8, 8, 8), precision="fp32"), "fp16 or int8"),
    (BuildOptions(dla_core=-1, batch=(8, 8, 8)), "numbered from 0"),
    (BuildOptions(precision="int4"), "--precision"),
    (BuildOptions(stages=("encoder", "mapper")), "--stages"),
    (BuildOptions(workspace_mib=1), "--workspace"),
])
def test_build_options_refuse_what_tensorrt_would_refuse_later(options, message):
    with pytest.raises(UsageError, match=message):
        options.check()


def test_dla_with_a_fixed_shape_is_accepted():
    BuildOptions(dla_core=1, batch=(4, 4, 4), precision="int8").check()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_plan_takes_the_onnx_of_the_precision(tiny_bundle, precision):
    manifest = load_manifest(tiny_bundle)
    jobs = plan_builds(manifest, BuildOptions(precision=precision, batch=(1, 8, 32)))
    assert [j.stage for j in jobs] == ["encoder", "map", "decoder", "pipeline"]
    by_stage = {j.stage: j for j in jobs}
    expected = "map.onnx" if precision == "fp32" else f"map.{precision}.onnx"  # int8: the symmetric file, never int8-cpu
    assert by_stage["map"].onnx.name == expected
    assert by_stage["map"].engine.name == engine_file("map", precision) == f"map.{precision}.plan"
    assert by_stage["map"].onnx_sha256 == sha256_file(by_stage["map"].onnx)
    latent = manifest.latent("image").shape[1:]
    assert by_stage["map"].profile == {"min": [1, *latent], "opt": [8, *latent], "max": [32, *latent]}
    assert by_stage["encoder"].profile["max"] == [32, 1, 256, 256] and by_stage["encoder"].input_name == "image"


@pytest.mark.slow
def test_plan_refuses_a_changed_onnx(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "map.fp16.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        plan_builds(load_manifest(copy), BuildOptions(precision="fp16", stages=("map",)))


def _with_engine(bundle, tmp_path, **overrides):
    """A bundle copy whose manifest records a map engine (bytes standing in for the plan: only the
    manifest checks run here, nothing loads it)."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = load_manifest(copy)
    plan = copy / "map.fp16.plan"
    plan.write_bytes(b"plan bytes")
    entry = {"file": plan.name, "sha256": sha256_file(plan), "onnx": "map.fp16.onnx",
             "onnx_sha256": manifest.variants["fp16"]["map"].sha256, "precision": "fp16", "batch": [1, 16, 64],
             "tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "dla_core": None,
             "version_compatible": False, **overrides}
    manifest.engines = {"map": {"fp16": entry}}
    manifest.save(copy)
    return load_manifest(copy)


MACHINE = {"tensorrt": "10.3.0", "compute_capability": "8.7"}


@pytest.mark.slow
def test_engine_check_accepts_a_match_and_names_the_rebuild_command(tiny_bundle, tmp_path):
    manifest = _with_engine(tiny_bundle, tmp_path)
    assert check_engine(manifest, "map", "fp16", MACHINE).name == "map.fp16.plan"
    assert engine_precision(manifest, "map.fp16.plan") == "fp16"
    command = f"psf-build {manifest.root} --precision fp16 --stages map --batch 1:16:64"
    cases = [
        ({"tensorrt": "10.7.0", "compute_capability": "8.7"}, "built with TensorRT 10.3.0, this machine has 10.7.0"),
        ({"tensorrt": "10.3.0", "compute_capability": "9.0"}, "compute capability 8.7 .Orin., this GPU is 9.0"),
    ]
    for machine, message in cases:
        with pytest.raises(EngineMismatch, match=message) as info:
            check_engine(manifest, "map", "fp16", machine)
        assert command in str(info.value)
    with pytest.raises(EngineMismatch, match="no int8 map engine .built: map/fp16.; build it with: psf-build"):
        check_engine(manifest, "map", "int8", MACHINE)


@pytest.mark.slow
def test_engine_check_refuses_changed_files(tiny_bundle, tmp_path):
    manifest = _with_engine(tiny_bundle, tmp_path, onnx_sha256="0" * 64)
    with pytest.raises(EngineMismatch, match="re-exported since"):
        check_engine(manifest, "map", "fp16", MACHINE)
    (manifest.root / "map.fp16.plan").write_bytes(b"other bytes")
    with pytest.raises(EngineMismatch, match="changed or corrupted"):
        check_engine(manifest, "map", "fp16", None)
    (manifest.root / "map.fp16.plan").unlink()
    with pytest.raises(EngineMismatch, match="missing; rebuild it with: psf-build"):
        check_engine(manifest, "map", "fp16", None)


@pytest.mark.parametrize("version,available", [("8.6.1", True), ("10.3.0", True), ("10.7.0", True), ("10.8.0", False),
                                               ("10.13.3.9", False), ("11.0.0", False), ("11.4.0.106", False),
                                               ("11.4.1", None)])
def test_dla_exists_only_in_the_tensorrt_releases_that_have_it(version, available):
    """Fault 2: DLA is in TensorRT 8.x-10.7; 10.8-10.x and 11.0-11.4.0 have none (later: tried)."""
    assert dla_available(version) is available


def test_dla_is_refused_up_front_and_a_dla_build_failure_does_not_blame_the_workspace(tmp_path):
    with pytest.raises(UsageError, match=r"--dla 0: TensorRT 10.13.3.9 has no DLA support \(DLA is in TensorRT 8.x to 10.7"):
        check_dla("10.13.3.9", 0)
    check_dla("10.3.0", 1)
    check_dla("11.4.0.106", None)
    message = build_failure(tmp_path / "map.int8.onnx", "map", "10.3.0", 0)
    assert "DLA" in message and "--workspace" not in message
    assert "--workspace" in build_failure(tmp_path / "map.fp16.onnx", "map", "10.3.0", None)


def test_engine_record_keeps_the_io_dtype_tensorrt_parsed(tmp_path):
    """Fragile: io_dtype was always float32, so the Triton repository's fp16 branch never ran."""
    from psf.export.trt_build import BuildJob

    plan = tmp_path / "map.fp16.plan"
    plan.write_bytes(b"plan")
    job = BuildJob("map", tmp_path / "map.fp16.onnx", "0" * 64, plan, "z_image")
    device = {"name": "Orin", "compute_capability": "8.7"}
    entry = engine_entry(job, BuildOptions(), plan, device, "10.3.0", io_dtype="float16")
    assert entry["io_dtype"] == "float16" and entry["sha256"] == sha256_file(plan)


def _manifest_with(engines: dict) -> Manifest:
    return Manifest(image_size=8, labels=["background", "brain"], normalization={}, slice_axis=2, opset=20, stages={},
                    engines=engines, root=Path("demo/bundle"))


def test_stage_plan_names_the_engine_that_was_built():
    """Item 4: `psf-infer --engine bundle/map.plan` is the map engine psf-build made."""
    one = _manifest_with({"map": {"fp16": {"file": "map.fp16.plan"}}})
    assert resolve_engine_precision(one, "map.plan", None) == "fp16"
    assert resolve_engine_precision(one, "map.fp16.plan", None) == "fp16"
    assert resolve_engine_precision(one, "model.onnx", None) is None
    with pytest.raises(EngineMismatch, match="no int8 map engine .built: map/fp16.; build it with: "
                                             "psf-build demo/bundle --precision int8 --stages map"):
        resolve_engine_precision(one, "map.plan", "int8")
    two = _manifest_with({"map": {"fp16": {}, "int8": {}}})
    assert resolve_engine_precision(two, "map.plan", "int8") == "int8"
    with pytest.raises(UsageError, match="map engines were built in fp16, int8; choose one with --precision"):
        resolve_engine_precision(two, "map.plan", None)
    none = _manifest_with({})
    with pytest.raises(EngineMismatch, match="no map engine .built: none.; build it with: psf-build demo/bundle "
                                             "--precision fp16 --stages map"):
        resolve_engine_precision(none, "map.plan", None)
    assert {f"{g}.plan" for g in GRAPHS} == {"encoder.plan", "map.plan", "decoder.plan", "pipeline.plan"}


def test_the_runtime_depends_on_nothing_under_psf_export():
    """Layering (issue 17): psf.runtime is what a deployed client runs; psf.export is build tooling."""
    import ast

    runtime = Path(__file__).parents[2] / "psf" / "runtime"
    for source in runtime.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("psf.export"), f"{source.name} imports {node.module}"


def test_rebuild_command_keeps_every_build_choice():
    entry = {"precision": "int8", "batch": [4, 4, 4], "dla_core": 1, "version_compatible": True}
    assert rebuild_command("b", "pipeline", entry) == ("psf-build b --precision int8 --stages pipeline --batch 4:4:4 "
                                                      "--dla 1 --version-compatible")


@pytest.mark.slow
@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_cli_without_tensorrt_names_the_extra_and_checks_flags_first(tiny_bundle, mni_data):
    result = run_cli("build", str(tiny_bundle), "--precision", "fp16")
    assert result.returncode == 1 and "privacy-sf[trt-cu12]" in result.stderr and "python3-libnvinfer" in result.stderr
    result = run_cli("build", str(tiny_bundle), "--dla", "0")
    assert result.returncode == 1 and "--dla needs fixed shapes" in result.stderr
    result = run_cli("infer", "--engine", str(tiny_bundle), str(mni_data / "test" / "images"), "--backend", "trt")
    assert result.returncode == 1 and "no fp16 encoder engine" in result.stderr and "psf-build" in result.stderr
    # Item 4: map.plan is "the map engine psf-build made"; none was, so psf-build is named, not psf-export.
    result = run_cli("infer", "--engine", str(tiny_bundle / "map.plan"), str(mni_data / "test" / "images"))
    assert result.returncode == 1 and "psf-export" not in result.stderr
    assert f"no map engine (built: none); build it with: psf-build {tiny_bundle} --precision fp16 --stages map" in \
        " ".join(result.stderr.split())


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_verify_and_infer_on_a_gpu(tiny_bundle, mni_data, tmp_path, precision):
    """The real thing: build engines, check them against ONNX Runtime, segment the test scans with them."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    run_cli("build", str(copy), "--precision", precision, "--batch", "1:8:32", "--verify",
            "--verify-data", str(mni_data / "test"), check=True)
    manifest = load_manifest(copy)
    assert set(manifest.engines) == {"encoder", "map", "decoder", "pipeline"}
    entry = manifest.engines["map"][precision]
    assert entry["onnx_sha256"] == manifest.stage_file("map", precision).sha256 and entry["compute_capability"]
    out = tmp_path / "masks"
    run_cli("infer", "--engine", str(copy / f"map.{precision}.plan"), str(mni_data / "test" / "images"), "-o", str(out),
            "-q", check=True)
    assert any(out.iterdir())
    from psf.runtime.trt import TrtRunner

    images = np.random.default_rng(0).random((5, 1, 256, 256), dtype=np.float32)
    with TrtRunner(manifest, ("pipeline",), precision) as fused, TrtRunner(manifest, ("encoder", "map", "decoder"), precision,
                                                                           graphs=False) as chain:
        a, b = fused.infer({"image": images})["probs"], chain.infer({"image": images})["probs"]
        assert fused.graph_error is None and len(fused.graphs) == 1
    assert np.mean(a.argmax(1) != b.argmax(1)) < 0.01
