"""A real map server (psf serve: tritonserver with psf's own model) on loopback for the session, TLS material, a capturing proxy."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

pytest.importorskip("pytriton", reason="needs the serve extra: pip install 'privacy-sf[serve]'")

from psf.serve.launch import LoopbackServer, free_ports  # noqa: E402


@pytest.fixture(scope="session")
def map_server(tiny_bundle):
    with LoopbackServer(tiny_bundle, ("--threads", "2", "--http-infer")) as server:  # the tests' http:// clients
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    d = tmp_path_factory.mktemp("tls")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=psf-test-ca")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{who}.pem", "-days", "2", "-extfile", "san.ext")
    return {name: d / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


class CaptureProxy:
    """A TCP proxy on loopback that records every byte the client sends upstream.

    `drop_first` connections are accepted and closed at once, as a flapping network would.
    """

    def __init__(self, upstream_port: int, drop_first: int = 0):
        self.upstream_port, self.drop_first = upstream_port, drop_first
        self.port = free_ports(1)[0]
        self.sent = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                drop = self.connections <= self.drop_first
            if drop:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source, target, record):
        try:
            while chunk := source.recv(1 << 16):
                if record:
                    with self._lock:
                        self.sent += chunk
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._closing = True
        self._listener.close()


@pytest.fixture
def capture_proxy():
    proxies = []

    def make(upstream_port: int, drop_first: int = 0) -> CaptureProxy:
        proxies.append(CaptureProxy(upstream_port, drop_first))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()
