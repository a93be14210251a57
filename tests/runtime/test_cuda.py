"""The CUDA layer (psf.runtime.cuda): a clear error where there is no GPU; the real calls where there is one."""

from __future__ import annotations

import numpy as np
import pytest

from psf.errors import MissingDependency
from psf.runtime.cuda import CudaError, CudaGraph, DeviceBuffer, PinnedArray, Stream, cuda_api


def _gpu_present() -> bool:
    import shutil

    return shutil.which("nvidia-smi") is not None


@pytest.mark.skipif(_gpu_present(), reason="checks the message shown where there is no GPU")
def test_no_gpu_is_a_clear_error():
    cuda_api.cache_clear()
    with pytest.raises((CudaError, MissingDependency)) as info:
        cuda_api()
    text = str(info.value)
    assert ("--backend ort" in text) or ("privacy-sf[trt-cu12]" in text and "privacy-sf[trt-cu13]" in text)


@pytest.mark.gpu
def test_copies_streams_and_graph_replay():
    api = cuda_api()
    stream = Stream(api)
    n = 1 << 16
    src, dst = PinnedArray(api, (n,), np.float32), PinnedArray(api, (n,), np.float32)
    a, b = DeviceBuffer(api, n * 4), DeviceBuffer(api, n * 4)
    src.array[:] = np.arange(n, dtype=np.float32)
    api.to_device(a.ptr, src.array, stream.raw)
    api.device_copy(b.ptr, a.ptr, n * 4, stream.raw)
    api.to_host(dst.array, b.ptr, stream.raw)
    stream.synchronize()
    assert np.array_equal(src.array, dst.array)
    if api.supports_graphs:
        graph = CudaGraph.capture(api, stream, lambda: (api.to_device(a.ptr, src.array, stream.raw),
                                                        api.to_host(dst.array, a.ptr, stream.raw)))
        src.array[:] = 3.0
        graph.launch(stream)
        stream.synchronize()
        assert np.all(dst.array == 3.0)
        with pytest.raises(CudaError):
            CudaGraph.capture(api, stream, stream.synchronize)
        graph.close()
    for item in (src, dst, a, b, stream):
        item.close()
