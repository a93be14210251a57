"""8 concurrent clients x 200 slices against a real server: every answer arrives and is right; TLS and mTLS."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from psf.bench.load import LoadOptions, run_map_load
from psf.manifest import load_manifest
from psf.serve.client import ClientOptions, RemoteError, RemoteMap
from psf.serve.launch import LoopbackServer
from psf.serve.schema import WireSchema
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_eight_clients_200_slices_each_nothing_lost_nothing_wrong(map_server, tiny_bundle):
    result = run_map_load(map_server.grpc_url, load_manifest(tiny_bundle), LoadOptions(clients=8, slices=200))
    assert result["sent"] == 1600
    assert (result["answered"], result["lost"], result["wrong"]) == (1600, 0, 0), result["errors"]
    assert 0 < result["p50_ms"] <= result["p99_ms"] and result["slices_per_s"] > 0


def test_bench_load_cli_reports_latency_and_throughput(map_server, tiny_bundle, tmp_path):
    out = tmp_path / "load.json"
    result = run_cli("bench", str(tiny_bundle), "--load", "--server", map_server.http_url, "--clients", "2",
                     "--slices", "20", "--json", str(out), check=True)
    report = json.loads(out.read_text())
    assert report["load"][0]["lost"] == 0 and report["load"][0]["wrong"] == 0
    assert "p99" in result.stdout and "slices/s" in result.stdout


def test_mutual_tls(tiny_bundle, tls_files):
    f = tls_files
    args = ("--threads", "1", "--tls-cert", str(f["server.pem"]), "--tls-key", str(f["server.key"]),
            "--tls-ca", str(f["ca.pem"]), "--mtls")
    schema = WireSchema.for_bundle(load_manifest(tiny_bundle))
    z = np.zeros((2, *schema.input_shape), np.float32)
    with LoopbackServer(tiny_bundle, args) as server:
        url = f"grpc://localhost:{server.grpc_port}"
        with RemoteMap(url, schema, ClientOptions(ca=f["ca.pem"], cert=f["client.pem"], key=f["client.key"])) as remote:
            assert remote.map(z).shape == (2, *schema.output_shape)
        # No client certificate: the handshake fails, and no plaintext client gets in either.
        for options in (ClientOptions(ca=f["ca.pem"], retries=1, backoff_s=0.01), ClientOptions(retries=1, backoff_s=0.01)):
            with pytest.raises(RemoteError):
                RemoteMap(url, schema, options).connect()


def test_serve_flag_errors_are_clear(tiny_bundle, tmp_path):
    cases = [(("--mtls", "--tls-cert", "a", "--tls-key", "b"), "no such file"),
             (("--tls-ca", "x.pem"), "need --tls-cert"),
             (("--tls-cert", "a.pem"), "go together"),
             (("--instances", "0"), "--instances"),
             (("--grpc-port", "9000", "--http-port", "9000"), "must differ"),
             (("--backend", "tpu"), "--backend 'tpu'")]
    for args, words in cases:
        result = run_cli("serve", str(tiny_bundle), *args)
        assert result.returncode == 1 and words in result.stderr, (args, result.stderr)
    missing = run_cli("serve", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = run_cli("serve", str(tiny_bundle), "--address", "127.0.0.1", "--grpc-port", str(port))
    assert taken.returncode == 1 and f"--grpc-port {port}: cannot listen" in taken.stderr
