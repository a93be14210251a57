"""fp16 and int8 copies of a bundle's fp32 ONNX graphs: precision is set in the ONNX, not in the builder.

TensorRT 11 builds strongly typed networks only (the FP16/INT8 builder flags and calibrators are gone),
so each precision is its own ONNX file, and ONNX Runtime runs the very same file to measure its cost:
- fp16: every weight and activation in fp16, fp32 at the inputs and outputs (onnxconverter-common;
  BatchNorm was already folded into the convolutions in fp32 by the exporter).
- int8: explicit Q/DQ nodes calibrated on real slices (images for graphs that take images, the fp32
  encoder's latents for the map net, the fp32 map's latents for the decoder); weights per channel, all
  symmetric, zero zero-points, as TensorRT requires.
- int8-cpu: the same calibration, activations asymmetric uint8. ONNX Runtime folds a ReLU into the
  quantization only when its zero point is the type's minimum, which symmetric int8 never has: every
  ReLU then stays a float op between a DQ and a Q, and the symmetric file ran slower than fp32 on this
  2-core CPU (8-10 ms vs 6.7 ms); uint8 runs at 3 ms. TensorRT cannot take non-zero zero points.
The softmax tail after the last convolution stays in fp32 in both int8 files.
No torch here: only onnx, onnxconverter-common and ONNX Runtime's quantization tools.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from psf.errors import MissingDependency
from psf.io.atomic import atomic_path


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependency("onnx", "train") from exc
    return onnx


def to_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations, fp32 inputs and outputs."""
    onnx = _onnx()
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise MissingDependency("onnxconverter-common (fp16 ONNX)", "train") from exc
    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _set_precision_meta(model, "fp16")
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))


def to_int8(src: Path, dst: Path, calibration: np.ndarray, input_name: str, symmetric: bool) -> None:
    """Static Q/DQ quantization calibrated (min/max) on `calibration`; see the module docstring for `symmetric`."""
    onnx = _onnx()
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self._items = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self):
            item = next(self._items, None)
            return None if item is None else {input_name: item}

    with tempfile.TemporaryDirectory(prefix="psf-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantized = Path(tmp) / "quantized.onnx"
        quantize_static(
            str(prepared), str(quantized), Feeds(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=_float_nodes(prepared),
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
        model = onnx.load(str(quantized))
    _set_precision_meta(model, "int8" if symmetric else "int8-cpu")
    with atomic_path(dst) as tmp_path:
        onnx.save(model, str(tmp_path))
        onnx.checker.check_model(str(tmp_path))


def _float_nodes(path: Path) -> list[str]:
    """Nodes that stay fp32: those after the last convolution (tanh, depth-to-space, softmax), and GroupNorm's
    InstanceNormalization (a DP-trained mapping net; ONNX Runtime's quantizer refuses its shared scale/bias)."""
    graph = _onnx().load(str(path)).graph
    last_conv = max(i for i, node in enumerate(graph.node) if node.op_type == "Conv")
    return [node.name for i, node in enumerate(graph.node)
            if i > last_conv or node.op_type == "InstanceNormalization"]


def _set_precision_meta(model, variant: str) -> None:
    for prop in model.metadata_props:
        if prop.key == "psf.precision":
            prop.value = variant
            return
    model.metadata_props.add(key="psf.precision", value=variant)


def symmetric_zero_points(path: Path) -> bool:
    """True if every QuantizeLinear/DequantizeLinear in the file has zero (or no) zero points: TensorRT's rule."""
    onnx = _onnx()
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
            zero_point = constants.get(node.input[2])
            if zero_point is None or np.any(zero_point != 0):
                return False
    return True
