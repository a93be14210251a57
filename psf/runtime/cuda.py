"""CUDA memory, streams and graphs for the TensorRT runtime, without torch.

cuda-python (`cuda.bindings.runtime`, what TensorRT's own samples use since 10.14) first; pycuda where
only it is installed (older Jetson images). Every runtime call returns (err, value...); `_check` turns a
non-success code into a CudaError naming the call. pycuda is offered without graph capture: the runner
then enqueues every batch itself, which is correct, only slower at batch 1.

Threads: the CUDA runtime's current device and pycuda's current context belong to a thread, and Triton
calls a model from its own handler threads; `make_current()` (first thing in every runner call) sets
them up once in each thread that uses the API.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from psf.errors import MissingDependency, PsfError


class CudaError(PsfError):
    """A CUDA runtime call failed; the message names the call and CUDA's own error string."""


class PerThread:
    """Calls `setup` once in each thread that calls this object (a CUDA context is current per thread)."""

    def __init__(self, setup: Callable[[], None]):
        self._setup, self._local = setup, threading.local()

    def __call__(self) -> None:
        if not getattr(self._local, "done", False):
            self._setup()
            self._local.done = True


def driver_advice(bindings_version: str, driver_version: int) -> str:
    """Why CUDA did not start, in driver terms: cuda-python N needs a CUDA N driver (cudaDriverGetVersion
    gives 1000 * major + 10 * minor, 0 without a driver) and the extra that matches this driver."""
    need = int(str(bindings_version).split(".")[0] or 0)
    if driver_version <= 0:
        return "no NVIDIA driver was found (is there an NVIDIA GPU and its driver?)"
    have = f"{driver_version // 1000}.{driver_version % 1000 // 10}"
    extra = f"privacy-sf[trt-cu{driver_version // 1000}]"
    if need > driver_version // 1000:
        return (f"cuda-python {bindings_version} needs a CUDA {need} driver, this driver supports CUDA {have}; "
                f"update the driver or install the CUDA {driver_version // 1000} build: pip install '{extra}'")
    return f"the driver supports CUDA {have} (cuda-python {bindings_version})"


class CudaBindings:
    """The CUDA runtime through cuda-python's cuda.bindings (12.x and 13.x)."""

    name = "cuda-bindings"
    supports_graphs = True

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.rt = cudart
        self.device = 0
        self.make_current = PerThread(lambda: self.set_device(self.device))

    @property
    def version(self) -> str:
        try:
            from cuda.bindings import __version__
        except ImportError:
            __version__ = "12"
        return __version__

    def driver_version(self) -> int:
        """1000 * major + 10 * minor of the CUDA version the driver supports; 0 without a driver."""
        err, version = self.rt.cudaDriverGetVersion()
        return int(version) if err == self.rt.cudaError_t.cudaSuccess else 0

    def _check(self, call: str, result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            raise CudaError(f"{call} failed: {getattr(err, 'name', err)} ({text.decode() if isinstance(text, bytes) else text})")
        return values[0] if len(values) == 1 else tuple(values) or None

    def device_count(self) -> int:
        return self._check("cudaGetDeviceCount", self.rt.cudaGetDeviceCount())

    def set_device(self, index: int) -> None:
        self._check("cudaSetDevice", self.rt.cudaSetDevice(index))
        self.device = index

    def device_info(self, index: int = 0) -> dict:
        prop = self._check("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(index))
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return {"name": name.rstrip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}",
                "memory_bytes": int(prop.totalGlobalMem)}

    def malloc(self, nbytes: int) -> int:
        return int(self._check("cudaMalloc", self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, ptr: int) -> None:
        self._check("cudaFree", self.rt.cudaFree(ptr))

    def malloc_host(self, nbytes: int) -> int:
        return int(self._check("cudaMallocHost", self.rt.cudaMallocHost(max(1, nbytes))))

    def free_host(self, ptr: int) -> None:
        self._check("cudaFreeHost", self.rt.cudaFreeHost(ptr))

    def stream_create(self):
        return self._check("cudaStreamCreateWithFlags",
                           self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def stream_handle(self, stream) -> int:
        return int(stream)

    def stream_sync(self, stream) -> None:
        self._check("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def stream_destroy(self, stream) -> None:
        self._check("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def _copy(self, call: str, dst: int, src: int, nbytes: int, kind, stream) -> None:
        self._check(call, self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def to_device(self, dst: int, host: np.ndarray, stream) -> None:
        self._copy("cudaMemcpyAsync(host->device)", dst, host.ctypes.data, host.nbytes,
                   self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def to_host(self, host: np.ndarray, src: int, stream) -> None:
        self._copy("cudaMemcpyAsync(device->host)", host.ctypes.data, src, host.nbytes,
                   self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def device_copy(self, dst: int, src: int, nbytes: int, stream) -> None:
        self._copy("cudaMemcpyAsync(device->device)", dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream)

    def begin_capture(self, stream) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check("cudaStreamBeginCapture", self.rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream):
        return self._check("cudaStreamEndCapture", self.rt.cudaStreamEndCapture(stream))

    def instantiate(self, graph):
        return self._check("cudaGraphInstantiate", self.rt.cudaGraphInstantiate(graph, 0))

    def launch(self, graph_exec, stream) -> None:
        self._check("cudaGraphLaunch", self.rt.cudaGraphLaunch(graph_exec, stream))

    def clear_error(self) -> None:
        """Reset the sticky-free last error a failed capture leaves behind."""
        self.rt.cudaGetLastError()

    def destroy_graph(self, graph, graph_exec) -> None:
        if graph_exec is not None:
            self._check("cudaGraphExecDestroy", self.rt.cudaGraphExecDestroy(graph_exec))
        if graph is not None:
            self._check("cudaGraphDestroy", self.rt.cudaGraphDestroy(graph))


class PyCuda:
    """The fallback where only pycuda is installed (it needs a current context, made here once)."""

    name = "pycuda"
    supports_graphs = False

    def __init__(self):
        import pycuda.driver as drv

        self.drv = drv
        drv.init()
        self._context = drv.Device(0).retain_primary_context()
        self._allocations: dict[int, object] = {}
        # pycuda's context is current only in the threads that pushed it: Triton's handler threads too.
        self.make_current = PerThread(self._context.push)
        self.make_current()

    version = "pycuda"

    def driver_version(self) -> int:
        return int(self.drv.get_driver_version())

    def device_count(self) -> int:
        return self.drv.Device.count()

    def set_device(self, index: int) -> None:
        if index != 0:
            raise CudaError("the pycuda fallback drives GPU 0 only; install cuda-python for other GPUs")

    def device_info(self, index: int = 0) -> dict:
        device = self.drv.Device(index)
        major, minor = device.compute_capability()
        return {"name": device.name(), "compute_capability": f"{major}.{minor}", "memory_bytes": device.total_memory()}

    def malloc(self, nbytes: int) -> int:
        allocation = self.drv.mem_alloc(max(1, nbytes))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        self._allocations.pop(ptr).free()

    def malloc_host(self, nbytes: int) -> int:
        array = self.drv.pagelocked_empty(max(1, nbytes), np.uint8)
        self._allocations[array.ctypes.data] = array
        return array.ctypes.data

    def free_host(self, ptr: int) -> None:
        self._allocations.pop(ptr, None)

    def stream_create(self):
        return self.drv.Stream()

    def stream_handle(self, stream) -> int:
        return stream.handle

    def stream_sync(self, stream) -> None:
        stream.synchronize()

    def stream_destroy(self, stream) -> None:
        pass

    def to_device(self, dst: int, host: np.ndarray, stream) -> None:
        self.drv.memcpy_htod_async(dst, host, stream)

    def to_host(self, host: np.ndarray, src: int, stream) -> None:
        self.drv.memcpy_dtoh_async(host, src, stream)

    def device_copy(self, dst: int, src: int, nbytes: int, stream) -> None:
        self.drv.memcpy_dtod_async(dst, src, nbytes, stream)

    def clear_error(self) -> None:
        pass


@lru_cache(maxsize=1)
def cuda_api():
    """The first CUDA binding that loads, checked to see a GPU."""
    errors = []
    for cls in (CudaBindings, PyCuda):
        try:
            api = cls()
        except ImportError as exc:
            errors.append(f"{cls.name}: {exc}")
            continue
        except Exception as exc:  # pycuda raises its own LogicError/RuntimeError without a driver
            raise CudaError(f"{cls.name} is installed but CUDA did not start ({exc}); is there an NVIDIA GPU and driver?") from exc
        try:
            count = api.device_count()
        except CudaError as exc:
            advice = driver_advice(api.version, api.driver_version())
            raise CudaError(f"no usable CUDA GPU: {advice} ({exc}); the trt backend needs one, use --backend ort here") from exc
        if count < 1:
            raise CudaError("no CUDA GPU found; the trt backend needs one, use --backend ort here")
        return api
    raise MissingDependency("cuda-python (or pycuda) for the TensorRT runtime (with a CUDA 13 driver: privacy-sf[trt-cu13])",
                            "trt-cu12")


class DeviceBuffer:
    """`nbytes` of GPU memory at `ptr`, freed by close()."""

    def __init__(self, api, nbytes: int):
        self.api, self.nbytes = api, nbytes
        self.ptr = api.malloc(nbytes)

    def close(self) -> None:
        if self.ptr:
            self.api.free(self.ptr)
            self.ptr = 0


class PinnedArray:
    """A numpy array in page-locked host memory: async copies from and to it really overlap."""

    def __init__(self, api, shape: tuple[int, ...], dtype):
        self.api = api
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        self.ptr = api.malloc_host(nbytes)
        raw = (ctypes.c_byte * max(1, nbytes)).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)

    def close(self) -> None:
        if self.ptr:
            self.array = None
            self.api.free_host(self.ptr)
            self.ptr = 0


class Stream:
    """One non-default (non-blocking) stream: the runtime enqueues copies and engines on it."""

    def __init__(self, api):
        self.api = api
        self.raw = api.stream_create()

    @property
    def handle(self) -> int:
        return self.api.stream_handle(self.raw)

    def synchronize(self) -> None:
        self.api.stream_sync(self.raw)

    def close(self) -> None:
        if self.raw is not None:
            self.api.stream_destroy(self.raw)
            self.raw = None


class CudaGraph:
    """A captured stream section, replayed with one launch. Shapes and addresses are frozen at capture."""

    def __init__(self, api, graph, graph_exec):
        self.api, self.graph, self.exec = api, graph, graph_exec

    @classmethod
    def capture(cls, api, stream: Stream, enqueue: Callable[[], None]) -> "CudaGraph":
        """Record what `enqueue` puts on `stream` (it must not synchronize); raises CudaError if capture fails."""
        if not api.supports_graphs:
            raise CudaError(f"{api.name} offers no graph capture here")
        api.begin_capture(stream.raw)
        try:
            enqueue()
        except Exception:
            try:  # end the capture (the stream is unusable until then) and free what it recorded
                api.destroy_graph(api.end_capture(stream.raw), None)
            except CudaError:
                pass  # an invalidated capture yields no graph: nothing to free
            api.clear_error()
            raise
        graph = api.end_capture(stream.raw)
        try:
            return cls(api, graph, api.instantiate(graph))
        except CudaError:
            api.destroy_graph(graph, None)
            api.clear_error()
            raise

    def launch(self, stream: Stream) -> None:
        self.api.launch(self.exec, stream.raw)

    def close(self) -> None:
        if self.exec is not None or self.graph is not None:
            self.api.destroy_graph(self.graph, self.exec)
            self.graph = self.exec = None
