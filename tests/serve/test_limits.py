"""The request-size limit psf-serve prints for a proxy: every request it answers fits, one slice more does not."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2

from psf.manifest import load_manifest
from psf.serve.limits import FRAMING_BYTES, RequestLimits
from psf.serve.schema import WIRE_DTYPES, WireSchema


def _grpc_bytes(schema: WireSchema, n: int) -> int:
    """Size of the ModelInferRequest message tritonclient sends for n slices, plus gRPC's 5-byte prefix."""
    tensor = grpcclient.InferInput(schema.input_name, [n, *schema.input_shape], schema.triton_dtype)
    tensor.set_data_from_numpy(np.zeros((n, *schema.input_shape), schema.dtype))
    request = service_pb2.ModelInferRequest(model_name=schema.model_name, id="request-0123456789")
    request.inputs.extend([tensor._get_tensor()])
    request.outputs.extend([grpcclient.InferRequestedOutput(schema.output_name)._get_tensor()])
    request.raw_input_contents.extend([tensor._get_content()])
    return request.ByteSize() + 5


def _http_bytes(schema: WireSchema, n: int) -> int:
    tensor = httpclient.InferInput(schema.input_name, [n, *schema.input_shape], schema.triton_dtype)
    tensor.set_data_from_numpy(np.zeros((n, *schema.input_shape), schema.dtype), binary_data=True)
    body, _ = httpclient.InferenceServerClient.generate_request_body(
        [tensor], outputs=[httpclient.InferRequestedOutput(schema.output_name, binary_data=True)], request_id="request-0123456789")
    return len(body)


def test_limit_admits_every_answerable_request_and_no_larger_batch(tiny_bundle):
    manifest = load_manifest(tiny_bundle)
    schemas = [WireSchema.for_bundle(manifest, wire) for wire in WIRE_DTYPES]
    for max_batch in (1, 64):
        limits = RequestLimits.for_schemas(schemas, max_batch)
        assert limits.slice_bytes == max(s.slice_bytes()["up"] for s in schemas)  # the widest wire (fp32)
        for schema in schemas:
            for size in (_grpc_bytes, _http_bytes):
                assert size(schema, max_batch) <= limits.max_request_bytes, (schema.dtype, size.__name__)
                framing = size(schema, max_batch) - max_batch * schema.slice_bytes()["up"]
                assert 0 < framing < FRAMING_BYTES / 4, framing  # the headroom is ample, not the whole margin
        # One slice over --max-batch on the widest wire no longer fits: the proxy refuses what Triton would.
        widest = max(schemas, key=lambda s: s.slice_bytes()["up"])
        assert _grpc_bytes(widest, max_batch + 1) > limits.max_request_bytes
    assert "largest request" in RequestLimits(32768, 64).describe() and str(64 * 32768 + FRAMING_BYTES) in RequestLimits(32768, 64).describe()
