"""The TensorRT runtime's decisions, tested without a GPU: version rules, graph/context bookkeeping, the
capture-refused fallback, shapes, per-thread CUDA setup and the driver message. The same code runs on the
GPU in tests/export/test_trt_build.py (skipped here) and benchmarks/gpu_check.py."""

from __future__ import annotations

import threading

import pytest

from psf.errors import EngineMismatch
from psf.runtime.cuda import CudaError, PerThread, driver_advice
from psf.runtime.engines import tensorrt_compatible
from psf.runtime.trt import CaptureRefused, GraphPlan, concrete_shape, refused_enqueue


@pytest.mark.parametrize("built,installed,compatible,ok", [
    ("10.3.0", "10.3.0", False, True), ("10.3.0", "10.3.1", False, False),
    ("10.13.3.9", "10.13.3.8", False, False),  # fault 3: the build number counts for plain engines
    ("10.3.0", "10.3.0.30", False, True),  # pip's 10.3.0 has no build number: three components compared
    ("10.3.0", "10.7.0", True, True), ("10.7.0", "10.3.0", True, False),
    ("10.13.0", "11.4.0.106", True, True),  # fault 3: TensorRT 10 version-compatible engines run on 11
    ("10.13.0", "11.4.0.106", False, False), ("8.6.1", "10.3.0", True, True), ("8.6.1", "11.4.0", True, False),
    ("11.4.0.106", "10.13.3.9", True, False), ("11.1.0.5", "11.1.0.5", False, True),
])
def test_tensorrt_version_rule(built, installed, compatible, ok):
    assert tensorrt_compatible(built, installed, compatible) is ok


def test_a_refused_enqueue_while_capturing_falls_back_instead_of_failing():
    """Fault 1: execute_async_v3 returning False during capture is a CudaError the runner catches."""
    assert isinstance(refused_enqueue("map.fp16.plan", capturing=True), CaptureRefused)
    assert isinstance(refused_enqueue("map.fp16.plan", capturing=True), CudaError)
    plain = refused_enqueue("map.fp16.plan", capturing=False)
    assert isinstance(plain, EngineMismatch) and not isinstance(plain, CudaError)


def test_each_captured_batch_size_keeps_its_own_context():
    """Fault 4: 70 slices at max batch 64 run as 64 + 6; the 64 graph must never replay a context that
    was since set to 6."""
    plan = GraphPlan(enabled=True, limit=4)
    for n in (64, 6):
        assert plan.context_key(n) == n and plan.capturable(n)
        plan.graphs[n] = f"graph{n}"
    for n in (64, 6, 64):
        assert plan.context_key(n) == n  # replay on the context captured with that shape
    assert plan.context_key(5) == 5  # room for two more sizes
    full = GraphPlan(enabled=True, limit=1)
    full.graphs[64] = "graph64"
    assert full.context_key(6) is None and full.context_key(64) == 64  # 6 runs plainly on the shared context


def test_after_a_failed_capture_new_sizes_run_plainly_and_old_graphs_still_replay():
    plan = GraphPlan(enabled=True)
    plan.graphs[64] = "graph64"
    plan.refuse("TensorRT declined")
    assert plan.context_key(6) is None and not plan.capturable(6)
    assert plan.context_key(64) == 64
    assert GraphPlan(enabled=False).context_key(8) is None  # graphs off, or pycuda: never captured


def test_buffer_shapes_must_be_concrete():
    """Fragile: buffers were sized from engine shapes with -1 in them; now from the profile's largest shape."""
    assert concrete_shape("e", "image", (64, 1, 256, 256)) == (64, 1, 256, 256)
    with pytest.raises(EngineMismatch, match="'probs' has shape .64, 3, -1, 256."):
        concrete_shape("e", "probs", (64, 3, -1, 256))


def test_cuda_setup_runs_once_in_every_thread():
    """Fault 7: pycuda's context (and the runtime's device) is current per thread; Triton calls from its own."""
    calls = []
    setup = PerThread(lambda: calls.append(threading.current_thread().name))
    setup()
    setup()
    threads = [threading.Thread(target=lambda: (setup(), setup())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 4 and len(set(calls)) == 4


@pytest.mark.parametrize("bindings,driver,expected", [
    ("13.5.0", 12080, "cuda-python 13.5.0 needs a CUDA 13 driver, this driver supports CUDA 12.8; "
                      "update the driver or install the CUDA 12 build: pip install 'privacy-sf[trt-cu12]'"),
    ("12.9.10", 0, "no NVIDIA driver was found"),
    ("12.9.10", 13000, "the driver supports CUDA 13.0"),
])
def test_driver_message_names_the_driver_and_the_extra(bindings, driver, expected):
    """Fault 8: "no usable CUDA GPU" on a CUDA 12 driver with cuda-python 13 now says which driver is needed."""
    assert driver_advice(bindings, driver).startswith(expected)


def test_extras_per_cuda_major():
    """Fault 8: the trt extras pin cuda-python to the driver's CUDA major."""
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "cuda-python>=12.6,<13" in extras["trt-cu12"] and any(d.startswith("tensorrt-cu12") for d in extras["trt-cu12"])
    assert "cuda-python>=13,<14" in extras["trt-cu13"] and any(d.startswith("tensorrt-cu13") for d in extras["trt-cu13"])
    assert extras["trt"] == ["privacy-sf[trt-cu12]"]
