"""TensorRT backend: engines from a bundle, run on one non-default stream with pinned host buffers. No torch.

- Tensors by name (TensorRT 10/11): set_input_shape, set_tensor_address, execute_async_v3.
- Several engines in a row (encoder -> map -> decoder) share device buffers: each reads the previous
  one's output where it lies, so latents never visit the host in local mode.
- The whole sequence for a batch size (copy in, engines, copy out) is captured into a CUDA graph after its
  first plain run and replayed from then on; if capture fails the runner keeps enqueueing (and says so).
- Before an engine is loaded, `check_engine` compares the manifest's record (TensorRT version, compute
  capability, file and ONNX hashes) with this machine and refuses a mismatch with the rebuild command.
"""

from __future__ import annotations

import logging

import numpy as np

from psf.errors import EngineMismatch, MissingDependency
from psf.manifest import Manifest, sha256_file

log = logging.getLogger(__name__)
CHAIN = ("encoder", "map", "decoder")


def tensorrt_module():
    """`import tensorrt`, or an error naming the extra (and the apt package on Jetson)."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependency("TensorRT (Python bindings; on Jetson: apt install python3-libnvinfer)", "trt") from exc
    return tensorrt


def tensorrt_compatible(built: str, installed: str, version_compatible: bool) -> bool:
    """Plain engines need the exact TensorRT they were built with; version-compatible ones a later
    release of the same major version."""
    b, i = ([int(x) for x in v.split(".")[:3]] for v in (built, installed))
    if not version_compatible:
        return b == i
    return b[0] == i[0] and i >= b


def check_engine(manifest: Manifest, stage: str, precision: str, machine: dict | None):
    """The engine file of (stage, precision), after checking it (file, hashes) and, unless `machine` is None,
    its TensorRT version and compute capability against `machine` ({"tensorrt": "10.3.0",
    "compute_capability": "8.7"}); EngineMismatch names the rebuild command."""
    from psf.export.trt_build import rebuild_command

    root = manifest.root
    entry = manifest.engines.get(stage, {}).get(precision)
    if entry is None:
        built = ", ".join(f"{s}/{p}" for s, by in manifest.engines.items() for p in by) or "none"
        raise EngineMismatch(f"the bundle at {root} has no {precision} {stage} engine (built: {built}); build it with: "
                             f"psf-build {root} --precision {precision}")
    rebuild = rebuild_command(root, stage, entry)
    path = root / entry["file"]
    if not path.is_file():
        raise EngineMismatch(f"{path} is missing; rebuild it with: {rebuild}")
    if sha256_file(path) != entry["sha256"]:
        raise EngineMismatch(f"{path}: sha256 does not match the manifest (changed or corrupted); rebuild it with: {rebuild}")
    source = manifest.stage_file(stage, precision)
    if source.sha256 != entry["onnx_sha256"]:
        raise EngineMismatch(f"{path} was built from another {source.file} (the bundle was re-exported since); "
                             f"rebuild it with: {rebuild}")
    if machine is not None:
        check_machine(manifest, stage, precision, machine)
    return path


def check_machine(manifest: Manifest, stage: str, precision: str, machine: dict) -> None:
    """The recorded engine's TensorRT version and compute capability against this machine's (no file I/O)."""
    from psf.export.trt_build import rebuild_command

    entry = manifest.engines[stage][precision]
    path, rebuild = manifest.root / entry["file"], rebuild_command(manifest.root, stage, entry)
    if not tensorrt_compatible(entry["tensorrt"], machine["tensorrt"], bool(entry.get("version_compatible"))):
        raise EngineMismatch(f"{path} was built with TensorRT {entry['tensorrt']}, this machine has {machine['tensorrt']}; "
                             f"rebuild it here with: {rebuild}")
    if entry["compute_capability"] != machine["compute_capability"]:
        raise EngineMismatch(f"{path} was built for compute capability {entry['compute_capability']} ({entry['gpu']}), "
                             f"this GPU is {machine['compute_capability']}; rebuild it here with: {rebuild}")


def this_machine() -> dict:
    from psf.runtime.cuda import cuda_api

    return {"tensorrt": tensorrt_module().__version__, **cuda_api().device_info(0)}


class _Engine:
    """One deserialized engine, its execution context and device buffers for the profile's largest batch."""

    def __init__(self, trt, runtime, plan: bytes, api, label: str):
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineMismatch(f"TensorRT {trt.__version__} could not load {label}; rebuild it on this machine with psf-build")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        low, _, high = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.item_shape = {n: tuple(int(d) for d in self.engine.get_tensor_shape(n))[1:] for n in names}
        self.dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.buffers = {}
        from psf.runtime.cuda import DeviceBuffer

        for n in names:
            self.buffers[n] = DeviceBuffer(api, self.max_batch * int(np.prod(self.item_shape[n])) * self.dtype[n].itemsize)

    def enqueue(self, batch: int, stream, input_address: int | None = None) -> None:
        name = self.inputs[0]
        self.context.set_input_shape(name, (batch, *self.item_shape[name]))
        self.context.set_tensor_address(name, input_address or self.buffers[name].ptr)
        for out in self.outputs:
            self.context.set_tensor_address(out, self.buffers[out].ptr)
        if not self.context.execute_async_v3(stream.handle):
            raise EngineMismatch("TensorRT refused to enqueue the engine (execute_async_v3 returned False)")

    def close(self) -> None:
        for buffer in self.buffers.values():
            buffer.close()
        self.context = self.engine = None


class TrtRunner:
    """Engines of one bundle run back to back; numpy in, numpy out, like OrtRunner.

    `stages` is one stage ("encoder", "map", "decoder") or ("pipeline",): then the fused pipeline
    engine if it was built, else the three stage engines chained on the device."""

    def __init__(self, manifest: Manifest, stages: tuple[str, ...], precision: str = "fp16", graphs: bool = True):
        self.manifest, self.precision, self.use_graphs = manifest, precision, graphs
        if stages == ("pipeline",) and precision not in manifest.engines.get("pipeline", {}):
            stages = CHAIN
        self.stages = stages
        self.engines: list[_Engine] = []
        self.graphs: dict[int, object] = {}
        self.graph_error: str | None = None

    def activate(self) -> "TrtRunner":
        if self.engines:
            return self
        from psf.runtime.cuda import PinnedArray, Stream, cuda_api

        # The files first (a missing engine is named before TensorRT is even loaded), then this machine.
        paths = [check_engine(self.manifest, s, self.precision, None) for s in self.stages]
        trt = tensorrt_module()
        machine = this_machine()
        for stage in self.stages:
            check_machine(self.manifest, stage, self.precision, machine)
        self.api = cuda_api()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if any(self.manifest.engines[s][self.precision].get("version_compatible") for s in self.stages):
            self.runtime.engine_host_code_allowed = True
        self.engines = [_Engine(trt, self.runtime, p.read_bytes(), self.api, str(p)) for p in paths]
        first, last = self.engines[0], self.engines[-1]
        self.max_batch = min(e.max_batch for e in self.engines)
        self.min_batch = max(e.min_batch for e in self.engines)  # fixed-shape engines (DLA): smaller batches are padded
        self.stream = Stream(self.api)
        self.host_in = PinnedArray(self.api, (self.max_batch, *first.item_shape[first.inputs[0]]), first.dtype[first.inputs[0]])
        self.host_out = PinnedArray(self.api, (self.max_batch, *last.item_shape[last.outputs[0]]), last.dtype[last.outputs[0]])
        return self

    @property
    def input_names(self) -> list[str]:
        return [self.activate().engines[0].inputs[0]]

    @property
    def output_names(self) -> list[str]:
        return [self.activate().engines[-1].outputs[0]]

    def _enqueue(self, n: int) -> None:
        first, last = self.engines[0], self.engines[-1]
        self.api.to_device(first.buffers[first.inputs[0]].ptr, self.host_in.array[:n], self.stream.raw)
        previous = None
        for engine in self.engines:
            engine.enqueue(n, self.stream, previous)
            previous = engine.buffers[engine.outputs[0]].ptr
        self.api.to_host(self.host_out.array[:n], last.buffers[last.outputs[0]].ptr, self.stream.raw)

    def _run_batch(self, n: int) -> None:
        from psf.runtime.cuda import CudaError, CudaGraph

        graph = self.graphs.get(n)
        if graph is not None:
            graph.launch(self.stream)
        else:
            self._enqueue(n)  # a first plain run per shape, as TensorRT asks before capture
            if self.use_graphs and self.graph_error is None:
                self.stream.synchronize()
                try:
                    self.graphs[n] = CudaGraph.capture(self.api, self.stream, lambda: self._enqueue(n))
                except CudaError as exc:
                    self.graph_error = str(exc)
                    log.warning("CUDA graph capture failed, enqueueing each batch instead: %s", exc)
        self.stream.synchronize()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.activate()
        (images,) = feed.values()
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
        for graph in self.graphs.values():
            graph.close()
        self.graphs.clear()
        for item in (*self.engines, *(getattr(self, a, None) for a in ("host_in", "host_out", "stream"))):
            if item is not None:
                item.close()
        self.engines = []

    def __enter__(self) -> "TrtRunner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()


def engine_precision(manifest: Manifest, file_name: str) -> str | None:
    """The precision of the engine stored as `file_name` in this bundle (for psf-infer --engine map.fp16.plan)."""
    for by_precision in manifest.engines.values():
        for precision, entry in by_precision.items():
            if entry.get("file") == file_name:
                return precision
    return None

