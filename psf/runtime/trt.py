"""TensorRT backend: engines from a bundle, run on one non-default stream with pinned host buffers. No torch.

- Tensors by name (TensorRT 10/11): set_input_shape, set_tensor_address, execute_async_v3; every
  boolean TensorRT returns is checked.
- Several engines in a row (encoder -> map -> decoder) share device buffers: each reads the previous
  one's output where it lies, so latents never visit the host in local mode.
- The whole sequence for a batch size (copy in, engines, copy out) is captured into a CUDA graph after its
  first plain run and replayed from then on. A graph freezes its context's shapes, so each captured batch
  size has its own execution contexts (NVIDIA: one context per captured graph); other sizes run plainly
  on a shared context. If capture fails or TensorRT refuses to enqueue while capturing (trtexec expects
  that for some engines) the runner keeps enqueueing (and says so).
- Buffers are sized from the profile's largest input shape and the output shapes TensorRT derives from
  it, not from the engine's shapes with -1 in them.
- One runner serves one call at a time (a lock); each calling thread gets the CUDA context made current.
- Before an engine is loaded, psf.runtime.engines compares the manifest's record (TensorRT version,
  compute capability, file and ONNX hashes) with this machine and refuses a mismatch with the rebuild command.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from psf.errors import EngineMismatch, MissingDependency, PsfError
from psf.manifest import Manifest
from psf.registry import PIPELINE, STAGES
from psf.runtime.cuda import CudaError
from psf.runtime.engines import check_engine, check_machine

log = logging.getLogger(__name__)
CHAIN = STAGES  # the stage engines chained on the device when no fused pipeline engine was built
MAX_GRAPHS = 4  # batch sizes captured per runner; each holds its own execution contexts (device memory)


def tensorrt_module():
    """`import tensorrt`, or an error naming the extras (and the apt package on Jetson)."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependency("TensorRT (Python bindings; on Jetson: apt install python3-libnvinfer; "
                                "with a CUDA 13 driver use privacy-sf[trt-cu13])", "trt-cu12") from exc
    return tensorrt


def this_machine() -> dict:
    from psf.runtime.cuda import cuda_api

    return {"tensorrt": tensorrt_module().__version__, **cuda_api().device_info(0)}


class CaptureRefused(CudaError):
    """TensorRT would not enqueue an engine into a capturing stream; the runner runs it plainly instead."""


def refused_enqueue(label: str, capturing: bool) -> PsfError:
    """execute_async_v3 returned False: while capturing a graph that is TensorRT declining the capture
    (fall back to plain enqueues); otherwise the engine cannot run here."""
    if capturing:
        return CaptureRefused(f"TensorRT declined to enqueue {label} into a CUDA graph capture")
    return EngineMismatch(f"TensorRT refused to enqueue {label} (execute_async_v3 returned False); "
                          "its log above says why")


def concrete_shape(label: str, name: str, shape) -> tuple[int, ...]:
    """A TensorRT shape with no -1 left in it (what a buffer can be sized from)."""
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise EngineMismatch(f"{label}: tensor {name!r} has shape {dims} even at the profile's largest input; "
                             "psf runs engines whose output shapes follow from the input shape")
    return dims


class GraphPlan:
    """Which execution context and CUDA graph a batch size uses (plain data, no CUDA).

    A captured graph replays its context's shapes and addresses, so a size that was captured always runs
    on its own context (key = the size); sizes that are not captured share the plain context (key None).
    Capture is tried for the first `limit` sizes, until one capture fails."""

    def __init__(self, enabled: bool, limit: int = MAX_GRAPHS):
        self.enabled, self.limit = enabled, limit
        self.graphs: dict[int, object] = {}
        self.error: str | None = None

    def context_key(self, batch: int) -> int | None:
        if batch in self.graphs or self.capturable(batch):
            return batch
        return None

    def capturable(self, batch: int) -> bool:
        return self.enabled and self.error is None and batch not in self.graphs and len(self.graphs) < self.limit

    def refuse(self, reason: str) -> None:
        self.error = reason


class _Engine:
    """One deserialized engine, its execution contexts (one per captured batch size, one shared) and
    device buffers for the profile's largest shapes."""

    def __init__(self, trt, runtime, plan: bytes, api, label: str, dla_core: int | None = None):
        from psf.runtime.cuda import DeviceBuffer

        self.label = label
        if dla_core is not None:
            runtime.DLA_core = dla_core  # an engine built for DLA core 1 runs there, not on core 0
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineMismatch(f"TensorRT {trt.__version__} could not load {label}; rebuild it on this machine with psf-build")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        low, _, high = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.contexts: dict[int | None, object] = {}
        context = self.context(None)
        largest = concrete_shape(label, self.inputs[0], high)
        if not context.set_input_shape(self.inputs[0], largest):
            raise EngineMismatch(f"{label}: TensorRT refused the profile's own largest shape {largest}")
        shapes = {self.inputs[0]: largest}
        shapes.update({n: concrete_shape(label, n, context.get_tensor_shape(n)) for n in self.outputs})
        self.item_shape = {n: s[1:] for n, s in shapes.items()}
        self.dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.buffers = {n: DeviceBuffer(api, int(np.prod(shapes[n])) * self.dtype[n].itemsize) for n in shapes}

    def context(self, key: int | None):
        if key not in self.contexts:
            context = self.engine.create_execution_context()
            if context is None:
                raise EngineMismatch(f"{self.label}: TensorRT could not create an execution context (out of GPU memory?)")
            self.contexts[key] = context
        return self.contexts[key]

    def enqueue(self, batch: int, stream, key: int | None, input_address: int | None = None, capturing: bool = False) -> None:
        context, name = self.context(key), self.inputs[0]
        if not context.set_input_shape(name, (batch, *self.item_shape[name])):
            raise EngineMismatch(f"{self.label}: batch {batch} is outside the engine's profile "
                                 f"({self.min_batch}..{self.max_batch}); rebuild with another --batch")
        addresses = {name: input_address or self.buffers[name].ptr, **{o: self.buffers[o].ptr for o in self.outputs}}
        for tensor, address in addresses.items():
            if not context.set_tensor_address(tensor, address):
                raise EngineMismatch(f"{self.label}: TensorRT refused the device address of {tensor!r}")
        if not context.execute_async_v3(stream.handle):
            raise refused_enqueue(self.label, capturing)

    def close(self) -> None:
        for buffer in self.buffers.values():
            buffer.close()
        self.contexts.clear()
        self.engine = None


class TrtRunner:
    """Engines of one bundle run back to back; numpy in, numpy out, like OrtRunner.

    `stages` is one stage ("encoder", "map", "decoder") or ("pipeline",): then the fused pipeline
    engine if it was built, else the three stage engines chained on the device."""

    def __init__(self, manifest: Manifest, stages: tuple[str, ...], precision: str = "fp16", graphs: bool = True):
        self.manifest, self.precision, self.use_graphs = manifest, precision, graphs
        if stages == (PIPELINE,) and precision not in manifest.engines.get(PIPELINE, {}):
            stages = CHAIN
        self.stages = stages
        self.engines: list[_Engine] = []
        self.plan = GraphPlan(enabled=False)
        self._lock = threading.Lock()

    @property
    def graphs(self) -> dict[int, object]:
        return self.plan.graphs

    @property
    def graph_error(self) -> str | None:
        return self.plan.error

    def activate(self) -> "TrtRunner":
        with self._lock:
            if not self.engines:
                self._load()
        return self

    def _load(self) -> None:
        from psf.runtime.cuda import PinnedArray, Stream, cuda_api

        # The files first (a missing engine is named before TensorRT is even loaded), then this machine.
        paths = [check_engine(self.manifest, s, self.precision, None) for s in self.stages]
        trt = tensorrt_module()
        machine = this_machine()
        for stage in self.stages:
            check_machine(self.manifest, stage, self.precision, machine)
        self.api = cuda_api()
        self.api.make_current()
        self.logger = trt.Logger(trt.Logger.WARNING)  # TensorRT keeps a reference: it must outlive the runtime
        self.runtime = trt.Runtime(self.logger)
        entries = [self.manifest.engines[s][self.precision] for s in self.stages]
        if any(e.get("version_compatible") for e in entries):
            self.runtime.engine_host_code_allowed = True
        self.engines = [_Engine(trt, self.runtime, p.read_bytes(), self.api, str(p), e.get("dla_core"))
                        for p, e in zip(paths, entries)]
        first, last = self.engines[0], self.engines[-1]
        self.max_batch = min(e.max_batch for e in self.engines)
        self.min_batch = max(e.min_batch for e in self.engines)  # fixed-shape engines (DLA): smaller batches are padded
        self.plan = GraphPlan(enabled=self.use_graphs and self.api.supports_graphs)
        self.stream = Stream(self.api)
        self.host_in = PinnedArray(self.api, (self.max_batch, *first.item_shape[first.inputs[0]]), first.dtype[first.inputs[0]])
        self.host_out = PinnedArray(self.api, (self.max_batch, *last.item_shape[last.outputs[0]]), last.dtype[last.outputs[0]])

    @property
    def input_names(self) -> list[str]:
        return [self.activate().engines[0].inputs[0]]

    @property
    def output_names(self) -> list[str]:
        return [self.activate().engines[-1].outputs[0]]

    def _enqueue(self, n: int, key: int | None, capturing: bool = False) -> None:
        first, last = self.engines[0], self.engines[-1]
        self.api.to_device(first.buffers[first.inputs[0]].ptr, self.host_in.array[:n], self.stream.raw)
        previous = None
        for step in self.engines:
            step.enqueue(n, self.stream, key, previous, capturing)
            previous = step.buffers[step.outputs[0]].ptr
        self.api.to_host(self.host_out.array[:n], last.buffers[last.outputs[0]].ptr, self.stream.raw)

    def _run_batch(self, n: int) -> None:
        from psf.runtime.cuda import CudaGraph

        graph = self.plan.graphs.get(n)
        if graph is not None:
            graph.launch(self.stream)
        else:
            key = self.plan.context_key(n)
            self._enqueue(n, key)  # a first plain run per shape, as TensorRT asks before capture
            if key is not None:
                self.stream.synchronize()
                try:
                    self.plan.graphs[n] = CudaGraph.capture(self.api, self.stream, lambda: self._enqueue(n, key, True))
                except CudaError as exc:  # CaptureRefused included: this batch already ran plainly above
                    self.plan.refuse(str(exc))
                    log.warning("CUDA graph capture failed, enqueueing each batch instead: %s", exc)
        self.stream.synchronize()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.activate()
        (images,) = feed.values()
        with self._lock:
            self.api.make_current()
            out = []
            for start in range(0, len(images), self.max_batch):
                chunk = images[start : start + self.max_batch]
                run = max(len(chunk), self.min_batch)
                self.host_in.array[: len(chunk)] = chunk
                self.host_in.array[len(chunk) : run] = 0
                self._run_batch(run)
                out.append(self.host_out.array[: len(chunk)].copy())
        return {self.output_names[0]: np.concatenate(out)}

    def deactivate(self) -> None:
        with self._lock:
            for graph in self.plan.graphs.values():
                graph.close()
            self.plan.graphs.clear()
            for item in (*self.engines, *(getattr(self, a, None) for a in ("host_in", "host_out", "stream"))):
                if item is not None:
                    item.close()
            self.engines = []
            self.runtime = None

    def __enter__(self) -> "TrtRunner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()
