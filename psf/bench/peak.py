"""The machine's own compute peak, measured in the same run as the latencies it is compared with.

A constant peak goes stale with every host and with what else the host is doing: this used to be a fixed
190 GFLOP/s, while a 2048x2048 fp32 matrix product on the same two threads ran at ~280 GFLOP/s, so the
"FLOP floor" was too pessimistic by a third. The probe times one square GEMM in ONNX Runtime (the engine
being benchmarked, same thread count): fp32 MatMul and, for int8 graphs, MatMulInteger (uint8 x int8).
"""

from __future__ import annotations

import time

import numpy as np

GEMM_SIZE = 2048


def _gemm_model(integer: bool, n: int) -> bytes:
    from onnx import TensorProto, helper

    op, a_type, b_type, y_type = (("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32) if integer
                                  else ("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT))
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])], "gemm_probe",
        [helper.make_tensor_value_info("a", a_type, [n, n]), helper.make_tensor_value_info("b", b_type, [n, n])],
        [helper.make_tensor_value_info("y", y_type, [n, n])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def gemm_peak(threads: int | None, integer: bool = False, n: int = GEMM_SIZE, repeats: int = 5) -> float:
    """Best-of-`repeats` throughput of an n x n x n GEMM in ONNX Runtime: GFLOP/s (fp32) or GOP/s (int8)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(_gemm_model(integer, n), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    if integer:
        feed = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8), "b": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    else:
        feed = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    session.run(None, feed)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - start)
    return round(2 * n**3 / best / 1e9, 1)

