"""Hostile clients for a map server: a catalogue of bad requests over gRPC and HTTP, and an adversarial load.

What tests/serve/test_hostile_clients.py and benchmarks/serve_hostile.py send. The requests are built by
hand (gRPC protobuf messages, raw HTTP), not through psf's client, so they can lie about shapes and sizes
the way a malicious client would. Nothing here is used by psf-serve itself.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from psf.serve.schema import WireSchema

# What no reply may contain: a traceback, a source file, a filesystem path, a library's name.
LEAK = re.compile(r"Traceback|File \"|\.py\b|site-packages|/(home|root|tmp|usr|opt|work|var)/|numpy|onnx|pytriton|python",
                  re.IGNORECASE)


@dataclass(frozen=True)
class BadRequest:
    name: str
    protocol: str  # "grpc" or "http"
    send: Callable  # (host, port, timeout_s) -> (refused: bool, message: str)


_channels = threading.local()  # one gRPC channel per thread and server: an attacker reuses its connection


def _grpc_call(host: str, port: int, build, timeout_s: float) -> tuple[bool, str]:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stubs = _channels.__dict__.setdefault("stubs", {})
    if (host, port) not in stubs:
        stubs[host, port] = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"{host}:{port}"))
    try:
        stubs[host, port].ModelInfer(build(service_pb2), timeout=timeout_s)
        return False, "answered"
    except grpc.RpcError as exc:
        return True, exc.details() or ""


def _grpc_request(model: str, inputs: list[tuple[str, str, list[int], bytes]], outputs: tuple[str, ...] = (), version: str = ""):
    def build(pb):
        request = pb.ModelInferRequest(model_name=model, model_version=version)
        for name, dtype, shape, raw in inputs:
            tensor = request.inputs.add()
            tensor.name, tensor.datatype = name, dtype
            tensor.shape.extend(shape)
            request.raw_input_contents.append(raw)
        for name in outputs:
            request.outputs.add().name = name
        return request
    return build


def _http_call(host: str, port: int, method: str, path: str, body: bytes, headers: dict, timeout_s: float) -> tuple[bool, str]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        text = answer.read().decode("utf-8", "replace")
    finally:
        connection.close()
    if answer.status == 200:
        return False, "answered"
    try:
        return True, json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        return True, text


def _http_binary(model: str, name: str, dtype: str, shape: list[int], raw: bytes, header_extra: dict | None = None,
                 declared: int | None = None, path: str | None = None):
    header = json.dumps({"inputs": [{"name": name, "datatype": dtype, "shape": shape,
                                     "parameters": {"binary_data_size": len(raw) if declared is None else declared}}],
                         **(header_extra or {})}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    return lambda host, port, t: _http_call(host, port, "POST", path or f"/v2/models/{model}/infer", header + raw, headers, t)


def _http_json(model: str, body, path: str | None = None, method: str = "POST", headers: dict | None = None):
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda host, port, t: _http_call(host, port, method, path or f"/v2/models/{model}/infer", payload,
                                            headers or {"Content-Type": "application/json"}, t)


def catalogue(schema: WireSchema, max_batch: int = 64) -> list[BadRequest]:
    """At least 30 bad requests, each of which a correct server refuses, over gRPC and HTTP.

    Not here: a batch dimension of 2**32 + k with k slices of data. Triton keeps the batch size in 32 bits,
    so the backend sees a consistent batch of k and answers it (the answer is right for the data sent);
    2**32, 2**48 and 2**62 arrive without a batch dimension and are refused."""
    m, i, s = schema.model_name, schema.input_name, list(schema.input_shape)
    d = schema.triton_dtype
    m32 = f"{m.rsplit('_', 1)[0]}_fp32"  # Triton takes JSON data for FP32 only: the JSON cases go there
    per_slice = int(np.prod(s))

    def data(n: int, value: float = 0.0, dtype=schema.dtype) -> bytes:
        return np.full((n, *s), value, dtype).tobytes()

    mixed = np.zeros((4, *s), schema.dtype)
    mixed[2, 0, 0, 0] = np.nan
    other = "psf_map_000000000000_fp16"
    grpc_cases = {
        "nan": [(i, d, [1, *s], data(1, np.nan))],
        "+inf": [(i, d, [1, *s], data(1, np.inf))],
        "-inf": [(i, d, [2, *s], data(2, -np.inf))],
        "one nan among four slices": [(i, d, [4, *s], mixed.tobytes())],
        "batch 2**32": [(i, d, [2**32, *s], data(1))],
        "batch 2**48": [(i, d, [2**48, *s], data(1))],
        "batch 2**62": [(i, d, [2**62, *s], data(1))],
        f"batch {max_batch + 1}": [(i, d, [max_batch + 1, *s], data(max_batch + 1))],
        "batch 0": [(i, d, [0, *s], b"")],
        "negative batch": [(i, d, [-1, *s], data(1))],
        "wrong tensor name": [("pixels", d, [1, *s], data(1))],
        "an extra tensor": [(i, d, [1, *s], data(1)), ("image", d, [1, *s], data(1))],
        "wrong dtype FP32": [(i, "FP32" if d == "FP16" else "FP16", [1, *s], data(1, dtype=np.float32 if d == "FP16" else np.float16))],
        "dtype INT8": [(i, "INT8", [1, *s], bytes(per_slice))],
        "dtype BYTES": [(i, "BYTES", [1], b"\x04\x00\x00\x00abcd")],
        "a dimension missing": [(i, d, [1, *s[1:]], data(1)[: len(data(1)) // s[0]])],
        "an extra dimension": [(i, d, [1, 1, *s], data(1))],
        "wrong slice shape": [(i, d, [1, s[0], s[1], s[2] + 1], data(1) + bytes(s[0] * s[1] * schema.dtype.itemsize))],
        "data shorter than its shape": [(i, d, [2, *s], data(1))],
        "data longer than its shape": [(i, d, [1, *s], data(2))],
    }
    cases = [BadRequest(name, "grpc", lambda h, p, t, b=_grpc_request(m, inputs): _grpc_call(h, p, b, t))
             for name, inputs in grpc_cases.items()]
    cases += [
        BadRequest("no inputs", "grpc", lambda h, p, t: _grpc_call(h, p, _grpc_request(m, []), t)),
        BadRequest("unknown model", "grpc", lambda h, p, t: _grpc_call(h, p, _grpc_request(other, grpc_cases["nan"][:1]), t)),
        BadRequest("model version 99", "grpc", lambda h, p, t: _grpc_call(h, p, _grpc_request(m, [(i, d, [1, *s], data(1))], version="99"), t)),
        BadRequest("unknown output", "grpc", lambda h, p, t: _grpc_call(h, p, _grpc_request(m, [(i, d, [1, *s], data(1))], outputs=("mask",)), t)),
    ]
    http_cases = {
        "http nan": _http_binary(m, i, d, [1, *s], data(1, np.nan)),
        "http inf": _http_binary(m, i, d, [1, *s], data(1, np.inf)),
        "http batch 2**32": _http_binary(m, i, d, [2**32, *s], data(1)),
        "http batch 2**62": _http_binary(m, i, d, [2**62, *s], data(1)),
        f"http batch {max_batch + 1}": _http_binary(m, i, d, [max_batch + 1, *s], data(max_batch + 1)),
        "http wrong tensor name": _http_binary(m, "pixels", d, [1, *s], data(1)),
        "http wrong slice shape": _http_binary(m, i, d, [1, s[0] + 1, *s[1:]], data(1) + bytes(s[1] * s[2] * schema.dtype.itemsize)),
        "http binary size larger than the body": _http_binary(m, i, d, [1, *s], data(1), declared=10 * len(data(1))),
        "http binary size negative": _http_binary(m, i, d, [1, *s], data(1), declared=-5),
        "http data shorter than its shape": _http_binary(m, i, d, [3, *s], data(1)),
        "http unknown output": _http_binary(m, i, d, [1, *s], data(1), {"outputs": [{"name": "mask"}]}),
        "http json fp16 data": _http_json(m, {"inputs": [{"name": i, "datatype": d, "shape": [1, *s], "data": [0.0] * per_slice}]}),
        "http json nan literal": _http_json(m32, b'{"inputs": [{"name": "%s", "datatype": "FP32", "shape": [1, %s], "data": [%s]}]}'
                                            % (i.encode(), ", ".join(map(str, s)).encode(), b", ".join([b"NaN"] * per_slice))),
        "http json numbers overflowing fp32": _http_json(m32, {"inputs": [{"name": i, "datatype": "FP32", "shape": [1, *s],
                                                                           "data": [1e39] * per_slice}]}),
        "http json data count wrong": _http_json(m32, {"inputs": [{"name": i, "datatype": "FP32", "shape": [1, *s], "data": [0.0] * 3}]}),
        "http json strings as data": _http_json(m32, {"inputs": [{"name": i, "datatype": "FP32", "shape": [1, *s],
                                                                  "data": ["x"] * per_slice}]}),
        "http invalid json": _http_json(m, b"{not json"),
        "http json not an object": _http_json(m, b"[1, 2, 3]"),
        "http empty body": _http_json(m, b""),
        "http header length past the body": lambda h, p, t: _http_call(h, p, "POST", f"/v2/models/{m}/infer", b"{}",
                                                                       {"Inference-Header-Content-Length": "4096"}, t),
        "http header length not a number": lambda h, p, t: _http_call(h, p, "POST", f"/v2/models/{m}/infer", b"{}",
                                                                      {"Inference-Header-Content-Length": "-x"}, t),
        "http unknown model": _http_json(other, {"inputs": []}),
        "http model path traversal": _http_json(m, {"inputs": []}, path="/v2/models/..%2F..%2Fetc%2Fpasswd/infer"),
        "http model repository load": _http_json(m, {"parameters": {"config": "{}"}}, path=f"/v2/repository/models/{m}/load"),
        "http shared memory register": _http_json(m, {"key": "/dev/shm/x", "offset": 0, "byte_size": 1024},
                                                   path="/v2/systemsharedmemory/region/x/register"),
        "http log settings": _http_json(m, {"log_file": "/tmp/psf-pwned.log"}, path="/v2/logging"),
    }
    cases += [BadRequest(name, "http", send) for name, send in http_cases.items()]
    return cases


# ---------------------------------------------------------------- adversarial load
@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    wrong: int = 0
    slices: int = 0
    seconds: float = 0.0
    bad_sent: int = 0
    bad_answered: int = 0  # bad requests the server answered as if they were good (must stay 0)
    messages: list[str] = field(default_factory=list)

    @property
    def slices_per_s(self) -> float:
        return self.slices / self.seconds if self.seconds else 0.0


def attacker_cases(schema: WireSchema, max_batch: int = 64) -> list[BadRequest]:
    """The issue's cycle: NaN, Inf, a batch dimension of 2**32, wrong tensor name, wrong shape, batch max+1."""
    names = ("nan", "+inf", "batch 2**32", "wrong tensor name", "wrong slice shape", f"batch {max_batch + 1}")
    by_name = {c.name: c for c in catalogue(schema, max_batch)}
    return [by_name[n] for n in names]


def adversarial_load(grpc_url: str, schema: WireSchema, map_fn, *, good_clients: int = 4, attacker: bool = True,
                     seconds: float = 10.0, request_slices: int = 8, tolerance: float = 2e-2,
                     max_batch: int = 64) -> LoadResult:
    """`good_clients` send correct requests and check every answer against `map_fn` (the local map net)
    while, with `attacker`, a fifth client cycles through attacker_cases as fast as the server answers."""
    from psf.serve.client import ClientOptions, RemoteError, RemoteMap

    rng = np.random.default_rng(0)
    payloads = [np.tanh(rng.normal(size=(request_slices, *schema.input_shape))).astype(schema.dtype) for _ in range(8)]
    expected = [map_fn(p.astype(np.float32)) for p in payloads]
    result, lock, stop = LoadResult(), threading.Lock(), threading.Event()
    host, port = grpc_url.split("://", 1)[1].rsplit(":", 1)

    def good(k: int) -> None:
        remote = RemoteMap(grpc_url, schema, ClientOptions(wire="fp16" if schema.dtype == np.float16 else "fp32",
                                                           request_slices=request_slices, inflight=1, retries=0))
        remote.connect()
        step = 0
        try:
            while not stop.is_set():
                index = (k + step) % len(payloads)
                step += 1
                try:
                    got = remote.map(payloads[index].astype(np.float32))
                    bad = not np.allclose(got, expected[index], atol=tolerance, rtol=tolerance)
                    with lock:
                        result.requests += 1
                        result.slices += request_slices
                        result.wrong += int(bad)
                except RemoteError as exc:
                    with lock:
                        result.requests += 1
                        result.errors += 1
                        if len(result.messages) < 5:
                            result.messages.append(str(exc)[:300])
        finally:
            remote.close()

    threads = [threading.Thread(target=good, args=(k,), daemon=True) for k in range(good_clients)]
    attacker_process, counts, halt = None, None, None
    if attacker:  # its own process, so it attacks at full speed instead of queueing on the good clients' GIL
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        counts, halt = context.Array("q", 2), context.Event()
        attacker_process = context.Process(target=_attack, args=(host, int(port), schema, max_batch, halt, counts), daemon=True)
        attacker_process.start()
        deadline = time.monotonic() + 60
        while counts[0] == 0 and attacker_process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # the good clients start once the attack has
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    result.seconds = time.perf_counter() - start
    if attacker_process is not None:
        halt.set()
        attacker_process.join(timeout=30)
        result.bad_sent, result.bad_answered = counts[0], counts[1]
    return result


def _attack(host: str, port: int, schema: WireSchema, max_batch: int, halt, counts) -> None:
    """The attacker's process: cycle through attacker_cases until `halt`; counts = [sent, answered]."""
    cases, step = attacker_cases(schema, max_batch), 0
    while not halt.is_set():
        refused, _ = cases[step % len(cases)].send(host, port, 10.0)
        step += 1
        with counts.get_lock():
            counts[0] += 1
            counts[1] += int(not refused)
