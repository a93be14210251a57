"""psf-infer --server: encode and decode here, map on a real Triton server; same masks as local mode."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _masks(folder):
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.rglob("*.nii.gz"))}


@pytest.fixture(scope="module")
def local_masks(tiny_bundle, mni_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_cli("infer", "--engine", str(tiny_bundle), str(mni_data / "test" / "images"), "-o", str(out), "-q", check=True)
    return _masks(out)


@pytest.mark.parametrize("scheme, wire", [("grpc", "fp16"), ("http", "fp16"), ("grpc", "fp32")])
def test_split_equals_local(map_server, tiny_bundle, mni_data, local_masks, tmp_path, scheme, wire):
    port = map_server.grpc_port if scheme == "grpc" else map_server.http_port
    report = tmp_path / "run.json"
    result = run_cli("infer", "--engine", str(tiny_bundle), str(mni_data / "test" / "images"), "-o", str(tmp_path / "out"),
                     "-q", "--server", f"{scheme}://127.0.0.1:{port}", "--wire", wire, "--report", str(report), check=True)
    split = _masks(tmp_path / "out")
    assert split.keys() == local_masks.keys() and len(split) == 3  # 3 test volumes, 24 slices
    voxels = sum(m.size for m in split.values())
    differing = sum(int((split[k] != local_masks[k]).sum()) for k in split)
    # fp16 latents move a few boundary pixels at most; fp32 latents leave only float noise.
    assert differing / voxels <= (1e-3 if wire == "fp16" else 1e-4), f"{differing} of {voxels} voxels differ"
    wire_report = json.loads(report.read_text())["wire"]
    per_slice = (wire_report["bytes_up"] + wire_report["bytes_down"]) / wire_report["slices"]
    assert wire_report["slices"] == 24 and per_slice == (57344 if wire == "fp16" else 114688)
    assert "KiB/slice" in result.stdout and "split" in result.stdout


def test_split_mode_needs_a_server_and_says_so(tiny_bundle, mni_data, tmp_path):
    result = run_cli("infer", "--engine", str(tiny_bundle), str(mni_data / "test" / "images"), "-o", str(tmp_path),
                     "--mode", "split")
    assert result.returncode == 1 and "--server" in result.stderr


def test_unreachable_server_fails_clearly(tiny_bundle, mni_data, tmp_path):
    from psf.serve.launch import free_ports

    url = f"grpc://127.0.0.1:{free_ports(1)[0]}"
    result = run_cli("infer", "--engine", str(tiny_bundle), str(mni_data / "test" / "images"), "-o", str(tmp_path),
                     "--server", url, "--retries", "1", "--timeout", "2")  # a starting server is waited for --timeout
    assert result.returncode == 1
    assert url in result.stderr and "unavailable after 2 attempts" in result.stderr
    assert not list(tmp_path.rglob("*.nii.gz"))


def test_server_computing_in_int8_stays_close_to_local(tiny_bundle, mni_data, local_masks, tmp_path):
    """psf-serve --precision int8 runs the map net's int8 ONNX; the wire contract (model names, fp16) is unchanged."""
    from psf.serve.launch import LoopbackServer

    with LoopbackServer(tiny_bundle, ("--threads", "2", "--precision", "int8")) as server:
        run_cli("infer", "--engine", str(tiny_bundle), str(mni_data / "test" / "images"), "-o", str(tmp_path / "out"),
                "-q", "--server", server.grpc_url, check=True)
        assert "(int8)" in server.log_text()
    split = _masks(tmp_path / "out")
    voxels = sum(m.size for m in split.values())
    differing = sum(int((split[k] != local_masks[k]).sum()) for k in split)
    assert 0 < differing / voxels <= 0.02, f"{differing} of {voxels} voxels differ"


def test_server_on_tensorrt_without_an_engine_names_psf_build(tiny_bundle):
    result = run_cli("serve", str(tiny_bundle), "--backend", "trt", "--precision", "fp16", "--grpc-port", "0")
    assert result.returncode == 1
    assert "no fp16 map engine" in result.stderr and f"psf-build {tiny_bundle} --precision fp16" in result.stderr
