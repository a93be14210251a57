"""The wire contract, and a real server refusing everything off it with a message that says why."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from psf.manifest import load_manifest
from psf.serve.client import ClientOptions, RemoteError, RemoteMap, ServerAddress
from psf.serve.schema import WireSchema
from psf.errors import UsageError

pytestmark = pytest.mark.slow


def test_schema_payload_is_under_64_kb_and_below_the_8_bit_image(tiny_bundle):
    manifest = load_manifest(tiny_bundle)
    schema = WireSchema.for_bundle(manifest, "fp16")
    both_ways = sum(schema.slice_bytes().values())
    assert both_ways <= 64 * 1024 and both_ways < manifest.image_size ** 2
    assert schema.model_name.startswith("psf_map_") and schema.model_name.endswith("_fp16")
    assert manifest.stages["map"].sha256[:12] in schema.model_name
    assert WireSchema.for_bundle(manifest, "fp32").slice_bytes()["up"] == 2 * schema.slice_bytes()["up"]


def test_schema_check_refuses_off_contract_batches(tiny_bundle):
    schema = WireSchema.for_bundle(load_manifest(tiny_bundle))
    good = np.zeros((2, *schema.input_shape), np.float16)
    schema.check_request(good)
    for bad, words in [(good.astype(np.float32), "dtype"), (good[:, :, :-1], "shape"), (good[0], "shape"),
                       (np.zeros((65, *schema.input_shape), np.float16), "limit is 64"),
                       (np.full_like(good, np.nan), "NaN")]:
        with pytest.raises(ValueError, match=words):
            schema.check_request(bad)


@pytest.mark.parametrize("url, words", [("https://h:1", "no TLS"), ("ftp://h:1", "scheme"), ("grpc://h", "HOST:PORT"),
                                        ("grpc://h:1/v2", "HOST:PORT")])
def test_bad_server_urls_are_refused(url, words):
    with pytest.raises(UsageError, match=words):
        ServerAddress.parse(url)


def _grpc_infer(server, model, name, array, triton_dtype):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    request = grpcclient.InferInput(name, list(array.shape), triton_dtype)
    request.set_data_from_numpy(array)
    return client.infer(model, [request])


def test_server_refuses_wrong_dtype_shape_size_name_and_nan(map_server, tiny_bundle):
    schema = WireSchema.for_bundle(load_manifest(tiny_bundle), "fp16")
    shape = schema.input_shape
    cases = [
        (schema.input_name, np.zeros((1, *shape), np.float32), "FP32", "FP32"),
        (schema.input_name, np.zeros((1, shape[0], shape[1], shape[2] + 1), np.float16), "FP16", "unexpected shape"),
        (schema.input_name, np.zeros((1, shape[0] + 1, *shape[1:]), np.float16), "FP16", "unexpected shape"),
        (schema.input_name, np.zeros((65, *shape), np.float16), "FP16", "batch-size must be <= 64"),
        ("pixels", np.zeros((1, *shape), np.float16), "FP16", "pixels"),
        (schema.input_name, np.full((1, *shape), np.nan, np.float16), "FP16", "NaN"),
    ]
    for name, array, dtype, words in cases:
        with pytest.raises(InferenceServerException, match=words):
            _grpc_infer(map_server, schema.model_name, name, array, dtype)
    # ...and it still answers a request on the contract.
    good = np.zeros((2, *shape), np.float16)
    out = _grpc_infer(map_server, schema.model_name, schema.input_name, good, "FP16").as_numpy(schema.output_name)
    assert out.shape == (2, *schema.output_shape) and out.dtype == np.float16


def test_server_refuses_an_extra_tensor_over_http(map_server, tiny_bundle):
    schema = WireSchema.for_bundle(load_manifest(tiny_bundle), "fp16")
    client = httpclient.InferenceServerClient(f"127.0.0.1:{map_server.http_port}")
    inputs = []
    for name, shape in ((schema.input_name, schema.input_shape), ("image", (1, 256, 256))):
        request = httpclient.InferInput(name, [1, *shape], "FP16")
        request.set_data_from_numpy(np.zeros((1, *shape), np.float16), binary_data=True)
        inputs.append(request)
    with pytest.raises(InferenceServerException, match="image"):
        client.infer(schema.model_name, inputs)


def test_health_endpoint_and_both_wire_models_are_ready(map_server, tiny_bundle):
    import urllib.request

    with urllib.request.urlopen(f"{map_server.http_url}/v2/health/ready", timeout=5) as answer:
        assert answer.status == 200
    manifest = load_manifest(tiny_bundle)
    for wire in ("fp16", "fp32"):
        with RemoteMap(map_server.grpc_url, WireSchema.for_bundle(manifest, wire)) as remote:
            z = np.tanh(np.random.default_rng(0).normal(size=(3, *remote.schema.input_shape))).astype(np.float32)
            assert remote.map(z).shape == (3, *remote.schema.output_shape)


def test_client_with_another_bundle_is_told_which_model_is_missing(map_server, tiny_bundle):
    from dataclasses import replace

    schema = replace(WireSchema.for_bundle(load_manifest(tiny_bundle)), model_name="psf_map_000000000000_fp16")
    with pytest.raises(RemoteError, match="does not serve model psf_map_000000000000_fp16.*psf-serve BUNDLE"):
        RemoteMap(map_server.grpc_url, schema).connect()


def test_unreachable_server_is_retried_then_reported(tiny_bundle):
    from psf.serve.launch import free_ports

    url = f"grpc://127.0.0.1:{free_ports(1)[0]}"
    remote = RemoteMap(url, WireSchema.for_bundle(load_manifest(tiny_bundle)), ClientOptions(retries=2, backoff_s=0.01))
    with pytest.raises(RemoteError, match="unavailable after 3 attempts.*is psf-serve running"):
        remote.connect()
    assert remote.stats.retries == 2


def test_dropped_connections_are_retried_and_the_answer_is_right(map_server, tiny_bundle, capture_proxy):
    manifest = load_manifest(tiny_bundle)
    proxy = capture_proxy(map_server.grpc_port, drop_first=2)
    schema = WireSchema.for_bundle(manifest)
    z = np.tanh(np.random.default_rng(1).normal(size=(4, *schema.input_shape))).astype(np.float32)
    with RemoteMap(map_server.grpc_url, schema) as direct:
        expected = direct.map(z)
    # The client's own backoff (0.25 s, doubling) must outlast gRPC's reconnect backoff (~1 s after a reset):
    # with 0.01 s all five attempts could land inside it and fail on the channel's cached error.
    with RemoteMap(f"grpc://127.0.0.1:{proxy.port}", schema, ClientOptions(backoff_s=0.25)) as flaky:
        got = flaky.map(z)
    assert flaky.stats.retries >= 1
    np.testing.assert_allclose(got, expected, atol=1e-3)
