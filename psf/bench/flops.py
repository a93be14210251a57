"""Count FLOPs of an ONNX graph (2 per multiply-add) from its shapes, at batch 1.

Convolutions, transposed convolutions and matrix products dominate these networks; element-wise ops
are counted as one FLOP per output element, so the total is an honest floor for the work done.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ELEMENTWISE = {"Relu", "Add", "Sub", "Mul", "Div", "Exp", "Tanh", "Sigmoid", "Max", "Min", "Clip"}


def count_flops(onnx_path: str | Path) -> int:
    """FLOPs of one forward pass at batch 1 (dynamic dims set to 1)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(onnx_path))
    for value in (*model.graph.input, *model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {}
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        shapes[value.name] = dims
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if not out:
            continue
        n_out = int(np.prod(out))
        if node.op_type in ("Conv", "ConvTranspose"):
            w = inits.get(node.input[1]) or shapes.get(node.input[1])
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if node.op_type == "Conv":
                total += 2 * n_out * int(np.prod(w[1:]))
            else:
                in_shape = shapes[node.input[0]]
                total += 2 * int(np.prod(in_shape)) * int(np.prod(w[1:])) // max(group, 1)
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0]) or inits.get(node.input[0])
            total += 2 * n_out * int(a[-1])
        elif node.op_type in ELEMENTWISE:
            total += n_out
    return total
