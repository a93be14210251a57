"""The hospital side of a split deployment: send encoded latents to a map server, get mapped latents back.

Only the latent tensor is sent (fp16 by default): no pixels, no masks, no file names, no DICOM header,
no request ids. Several requests are in flight at once; UNAVAILABLE answers and dropped connections are
retried with exponential backoff; every other refusal is reported with the server's own message.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from psf.errors import MissingDependency, PsfError, UsageError
from psf.serve.schema import WireSchema

SCHEMES = ("grpc", "grpcs", "http")


class RemoteError(PsfError):
    """The map server refused a request or could not be reached (`transient`: unreachable, worth waiting for)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class ServerAddress:
    protocol: str  # "grpc" or "http"
    host_port: str
    tls: bool

    @classmethod
    def parse(cls, url: str, tls_files: bool = False) -> "ServerAddress":
        """grpc://HOST:PORT, grpcs://HOST:PORT (TLS) or http://HOST:PORT; --ca/--cert/--key turn TLS on for grpc."""
        parts = urlsplit(url if "://" in url else f"grpc://{url}")
        if parts.scheme == "https":
            raise UsageError(f"--server {url}: Triton's HTTP endpoint has no TLS; use grpcs://HOST:PORT (or grpc:// with --ca)")
        if parts.scheme not in SCHEMES:
            raise UsageError(f"--server {url}: scheme {parts.scheme!r}; use one of {', '.join(s + '://HOST:PORT' for s in SCHEMES)}")
        if not parts.hostname or parts.port is None or parts.path not in ("", "/"):
            raise UsageError(f"--server {url}: expected {parts.scheme}://HOST:PORT, e.g. {parts.scheme}://localhost:"
                             f"{8000 if parts.scheme == 'http' else 8001}")
        if tls_files and parts.scheme == "http":
            raise UsageError(f"--server {url}: --ca/--cert/--key need gRPC (Triton's HTTP endpoint has no TLS)")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls("http" if parts.scheme == "http" else "grpc", f"{host}:{parts.port}", parts.scheme == "grpcs" or tls_files)


@dataclass(frozen=True)
class ClientOptions:
    wire: str = "fp16"
    request_slices: int = 8      # slices per request
    inflight: int = 4            # requests in flight at once
    timeout_s: float = 30.0      # per request
    retries: int = 4             # on UNAVAILABLE / connection errors
    backoff_s: float = 0.25      # first retry's wait; doubles each time
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def check(self) -> None:
        if self.request_slices < 1 or self.inflight < 1:
            raise UsageError(f"--request-slices and --inflight must be >= 1, got {self.request_slices}, {self.inflight}")
        if self.timeout_s <= 0 or self.retries < 0:
            raise UsageError(f"--timeout must be > 0 and --retries >= 0, got {self.timeout_s}, {self.retries}")
        if (self.cert is None) != (self.key is None):
            raise UsageError("--cert and --key go together (the client certificate and its private key)")
        for flag, path in (("--ca", self.ca), ("--cert", self.cert), ("--key", self.key)):
            if path is not None and not Path(path).is_file():
                raise UsageError(f"{flag} {path}: no such file")


@dataclass
class WireStats:
    """What crossed the wire: counted at the client, tensor payload only (transport framing excluded)."""

    requests: int = 0
    retries: int = 0
    slices: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


def _tritonclient(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        from tritonclient.utils import InferenceServerException
    except ImportError as exc:
        raise MissingDependency(f"Triton's {protocol} client (tritonclient)", "client") from exc
    return module, InferenceServerException


def _is_transient(exc: Exception) -> bool:
    status = str(getattr(exc, "status", lambda: "")() or "")
    return (isinstance(exc, (ConnectionError, TimeoutError, OSError))
            or status in ("StatusCode.UNAVAILABLE", "503") or "UNAVAILABLE" in str(exc)[:80])


class RemoteMap:
    """Maps (n, *latent) float32 image latents to mask latents on a Triton server. Thread-safe."""

    def __init__(self, url: str, schema: WireSchema, options: ClientOptions = ClientOptions()):
        options.check()
        self.address = ServerAddress.parse(url, tls_files=any((options.ca, options.cert)))
        self.url, self.schema, self.options = url, schema, options
        self.module, self.ServerError = _tritonclient(self.address.protocol)
        self.stats = WireStats()
        self._stats_lock = threading.Lock()
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    # -- connection ------------------------------------------------------------------------------
    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            o, a = self.options, self.address
            if a.protocol == "grpc":
                client = self.module.InferenceServerClient(
                    a.host_port, ssl=a.tls, root_certificates=str(o.ca) if o.ca else None,
                    private_key=str(o.key) if o.key else None, certificate_chain=str(o.cert) if o.cert else None)
            else:
                client = self.module.InferenceServerClient(a.host_port, connection_timeout=o.timeout_s,
                                                           network_timeout=o.timeout_s)
            self._local.client = client
        return client

    def connect(self, wait_s: float = 0.0) -> "RemoteMap":
        """Check that the server is up and serves this bundle's map net; wait up to `wait_s` for it.

        A server that is starting (not reachable yet, or still loading its models) is waited for; a ready
        server without this model fails at once (psf-serve is ready only once every model is loaded)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if self._call(lambda c: c.is_model_ready(self.schema.model_name)):
                    break
                server_ready = self._call(lambda c: c.is_server_ready())
            except RemoteError as exc:
                if time.monotonic() >= deadline or not exc.transient:
                    raise
                time.sleep(0.5)
                continue
            if server_ready or time.monotonic() >= deadline:
                served = self._served_models()
                listing = "it does not list its models" if served is None else f"it serves: {', '.join(served) or 'nothing'}"
                waited = "" if server_ready else f" after waiting {wait_s:.0f} s (raise --timeout if it is still loading)"
                raise RemoteError(
                    f"{self.url} does not serve model {self.schema.model_name}{waited} (the map net of this bundle, "
                    f"map.onnx sha256 {self.schema.map_sha256[:12]}...); {listing}. "
                    f"Serve the same bundle there: psf-serve BUNDLE/ (or a model repository from psf-export --triton-repo)")
            time.sleep(0.5)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.options.inflight, thread_name_prefix="psf-remote")
        return self

    def _served_models(self) -> list[str] | None:
        """READY models, or None where the server keeps its repository index private (psf-serve does: one
        try, no retries, as a restricted API answers UNAVAILABLE)."""
        try:
            index = self._client().get_model_repository_index()
        except Exception:  # tritonclient's InferenceServerException or a socket error: no listing
            return None
        if hasattr(index, "models"):  # gRPC protobuf
            return [m.name for m in index.models if m.state == "READY"]
        return [m["name"] for m in index if m.get("state") == "READY"]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> "RemoteMap":
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------
    def _call(self, fn):
        """fn(client) with retries and exponential backoff on transient failures."""
        o = self.options
        for attempt in range(o.retries + 1):
            try:
                return fn(self._client())
            except Exception as exc:  # tritonclient raises InferenceServerException, sockets raise OSError
                if not _is_transient(exc):
                    raise RemoteError(f"{self.url}: {_message(exc)}") from exc
                if attempt == o.retries:
                    raise RemoteError(f"{self.url} unavailable after {o.retries + 1} attempts ({_message(exc)}); "
                                      f"is psf-serve running there? check --server, or raise --retries/--timeout",
                                      transient=True) from exc
                with self._stats_lock:
                    self.stats.retries += 1
                self._local.client = None  # a fresh connection for the next try
                time.sleep(o.backoff_s * (2 ** attempt) * (0.5 + random.random()))

    def _request(self, latents: np.ndarray) -> np.ndarray:
        s = self.schema
        wire = np.ascontiguousarray(latents, dtype=s.dtype)

        def infer(client):
            request = self.module.InferInput(s.input_name, list(wire.shape), s.triton_dtype)
            request.set_data_from_numpy(wire, **({"binary_data": True} if self.address.protocol == "http" else {}))
            wanted = [self.module.InferRequestedOutput(s.output_name, **({"binary_data": True} if self.address.protocol == "http" else {}))]
            if self.address.protocol == "grpc":
                return client.infer(s.model_name, [request], outputs=wanted, client_timeout=self.options.timeout_s)
            return client.infer(s.model_name, [request], outputs=wanted)

        try:
            answer = self._call(infer)
        except RemoteError as exc:
            if self.address.protocol == "http" and "restricted" in str(exc):  # psf-serve without --http-infer
                raise RemoteError(f"{self.url} answers no inference over HTTP (psf-serve opens it only with --http-infer); "
                                  f"use --server grpc://HOST:PORT (its gRPC port, 8001 by default)") from exc
            raise
        result = answer.as_numpy(s.output_name)
        if result is None or result.dtype != s.dtype or result.shape != (len(wire), *s.output_shape):
            got = None if result is None else (result.dtype, list(result.shape))
            raise RemoteError(f"{self.url}: answer {got} does not match {s.output_name} {s.dtype} {[len(wire), *s.output_shape]}")
        with self._stats_lock:
            self.stats.requests += 1
            self.stats.slices += len(wire)
            self.stats.bytes_up += wire.nbytes
            self.stats.bytes_down += result.nbytes
        return result

    def map(self, latents: np.ndarray) -> np.ndarray:
        """(n, *input_shape) -> (n, *output_shape) float32, `request_slices` per request, `inflight` at once."""
        if self._pool is None:
            self.connect()
        step = self.options.request_slices
        chunks = [latents[i : i + step] for i in range(0, len(latents), step)]
        answers = list(self._pool.map(self._request, chunks))
        if not answers:
            return np.zeros((0, *self.schema.output_shape), np.float32)
        return np.concatenate(answers).astype(np.float32)

    __call__ = map


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None)
    text = message() if callable(message) else str(exc)
    return f"{type(exc).__name__}: {text}" if not text.startswith("[") else text
