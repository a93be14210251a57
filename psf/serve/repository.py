"""A Triton model repository for the map net, for a standalone `tritonserver` fleet.

    DIR/psf_map_<sha12>_fp16/config.pbtxt, 1/model.onnx   fp16 in and out (Cast nodes around map.onnx)
    DIR/psf_map_<sha12>_fp32/config.pbtxt, 1/model.onnx   map.onnx as exported
    DIR/psf_map_<sha12>_<precision>_trt/...  1/model.plan  for each map engine psf-build made (TensorRT)

The model names are the ones WireSchema gives and psf-infer --server asks for, so a fleet serving
several bundles keeps them apart. Only the map net is written: no client network ever lands here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from psf.errors import MissingDependency, UsageError
from psf.io.atomic import write_bytes_atomic, write_text_atomic
from psf.manifest import Manifest, verify_file
from psf.serve.schema import DEFAULT_MAX_BATCH, WireSchema

TRITON_TYPES = {"fp16": "TYPE_FP16", "fp32": "TYPE_FP32"}


@dataclass(frozen=True)
class RepositoryOptions:
    max_batch: int = DEFAULT_MAX_BATCH
    max_queue_delay_us: int = 500
    instances: int = 1
    kind: str = "KIND_GPU"  # or KIND_CPU
    overwrite: bool = False

    def check(self) -> None:
        if self.kind not in ("KIND_GPU", "KIND_CPU", "KIND_AUTO"):
            raise UsageError(f"instance kind {self.kind!r}; choose KIND_GPU, KIND_CPU or KIND_AUTO")
        if self.instances < 1 or not 1 <= self.max_batch <= 4096:
            raise UsageError(f"instances must be >= 1 and max batch in 1..4096, got {self.instances}, {self.max_batch}")


def config_pbtxt(name: str, schema: WireSchema, platform: str, options: RepositoryOptions) -> str:
    """Text-format ModelConfig (Triton's model_config.proto) for one map model."""
    io_type = TRITON_TYPES["fp16" if schema.dtype.itemsize == 2 else "fp32"]
    dims = lambda shape: ", ".join(str(d) for d in shape)  # noqa: E731
    return (
        f'name: "{name}"\n'
        f'platform: "{platform}"\n'
        f"max_batch_size: {options.max_batch}\n"
        f'input [ {{ name: "{schema.input_name}" data_type: {io_type} dims: [ {dims(schema.input_shape)} ] }} ]\n'
        f'output [ {{ name: "{schema.output_name}" data_type: {io_type} dims: [ {dims(schema.output_shape)} ] }} ]\n'
        f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
        f"instance_group [ {{ count: {options.instances} kind: {options.kind} }} ]\n"
    )


def fp16_io_map(map_path: Path) -> bytes:
    """map.onnx with fp16 input and output: Cast in, the fp32 graph, Cast out (the map net computes in fp32)."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError as exc:
        raise MissingDependency("onnx (to write the fp16 map model)", "serve") from exc
    model = onnx.load(str(map_path))
    graph = model.graph
    (source,), (target,) = graph.input, graph.output
    inner_in, inner_out = f"{source.name}__fp32", f"{target.name}__fp32"
    for node in graph.node:
        node.input[:] = [inner_in if n == source.name else n for n in node.input]
        node.output[:] = [inner_out if n == target.name else n for n in node.output]
    graph.node.insert(0, helper.make_node("Cast", [source.name], [inner_in], to=TensorProto.FLOAT, name="wire_in"))
    graph.node.append(helper.make_node("Cast", [inner_out], [target.name], to=TensorProto.FLOAT16, name="wire_out"))
    source.type.tensor_type.elem_type = TensorProto.FLOAT16
    target.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_repository(manifest: Manifest, out: Path, options: RepositoryOptions = RepositoryOptions()) -> list[Path]:
    """Write the map net's Triton models under `out`; returns the model folders written."""
    options.check()
    out = Path(out)
    map_path = verify_file(manifest, "map")
    written = []
    models = [("fp16", "onnxruntime_onnx", "model.onnx", lambda: fp16_io_map(map_path)),
              ("fp32", "onnxruntime_onnx", "model.onnx", lambda: map_path.read_bytes())]
    for wire, platform, filename, payload in models:
        schema = WireSchema.for_bundle(manifest, wire)
        config = config_pbtxt(schema.model_name, schema, platform, options)
        written.append(_write_model(out / schema.model_name, config, filename, payload(), options))
    for precision, engine in sorted(manifest.engines.get("map", {}).items()):
        schema = WireSchema.for_bundle(manifest, "fp16" if engine.get("io_dtype", "float32") == "float16" else "fp32")
        name = f"{schema.model_name.rsplit('_', 1)[0]}_{precision}_trt"
        folder = out / name
        plan = Path(manifest.root) / engine["file"]
        config = config_pbtxt(name, schema, "tensorrt_plan", options)
        written.append(_write_model(folder, config, "model.plan", plan.read_bytes(), options))
    return written


def _write_model(folder: Path, config: str, filename: str, payload: bytes, options: RepositoryOptions) -> Path:
    if folder.exists():
        if not options.overwrite:
            raise UsageError(f"{folder} exists; pass --overwrite to replace it")
        shutil.rmtree(folder)
    write_bytes_atomic(folder / "1" / filename, payload)
    write_text_atomic(folder / "config.pbtxt", config)
    return folder
