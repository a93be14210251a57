"""psf-serve's engine: the bundle's mapping net behind Triton (the tritonserver the PyTriton wheel ships).

Only the map net is loaded: the server never holds an encoder, a decoder or a key. Each bundle is served
as two models, one per wire dtype (fp16, fp32), named by WireSchema. Triton refuses requests whose
names, dtypes, shapes or batch size differ from the model config; each model instance checks every
request again on its own (psf.serve.triton_model), so a bad request fails alone. Nothing here logs
tensor contents. How Triton is launched, and why not through PyTriton's proxy: psf.serve.tritonserver.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from psf.errors import PsfError, UsageError
from psf.manifest import Manifest, verify_file
from psf.serve.mapnet import MapNetOptions, map_runner
from psf.serve.schema import DEFAULT_MAX_BATCH, WIRE_DTYPES, WireSchema

log = logging.getLogger("psf.serve")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for gRPC TLS; `mutual` also requires clients to present a certificate signed by `ca`."""

    cert: Path
    key: Path
    ca: Path | None = None
    mutual: bool = False

    def check(self) -> None:
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-ca", self.ca)):
            if path is not None and not Path(path).is_file():
                raise UsageError(f"{flag} {path}: no such file")
        if self.mutual and self.ca is None:
            raise UsageError("--mtls needs --tls-ca: the CA that signed the client certificates")


def tls_from_flags(cert: Path | None, key: Path | None, ca: Path | None, mutual: bool) -> TlsFiles | None:
    """psf-serve's --tls-cert/--tls-key/--tls-ca/--mtls as TlsFiles (None: no TLS); combinations checked."""
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if (mutual or ca) and cert is None:
        raise UsageError("--mtls/--tls-ca need --tls-cert and --tls-key (the server's own certificate)")
    return TlsFiles(cert, key, ca, mutual) if cert else None


@dataclass(frozen=True)
class ServeOptions:
    address: str = "0.0.0.0"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    backend: str = "ort"
    precision: str = "fp32"  # the map net's compute (its ONNX variant or engine); the wire dtype is separate
    threads: int | None = None
    instances: int = 1
    max_batch: int = DEFAULT_MAX_BATCH
    batching: bool = True
    max_queue_delay_us: int = 500
    tls: TlsFiles | None = None
    log_file: Path | None = None
    wires: tuple[str, ...] = field(default=tuple(WIRE_DTYPES))
    debug: bool = False  # full detail of failures in the server log (never sent to clients); every refusal logged
    http_infer: bool = False  # inference over HTTP (psf.serve.tritonserver says why it is closed by default)

    def mapnet(self) -> MapNetOptions:
        return MapNetOptions(self.backend, self.precision, self.threads, self.max_batch)

    def check(self) -> None:
        from psf.registry import BACKENDS

        if self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.instances < 1:
            raise UsageError(f"--instances must be >= 1, got {self.instances}")
        if not 1 <= self.max_batch <= 4096:
            raise UsageError(f"--max-batch must be in 1..4096, got {self.max_batch}")
        if self.max_queue_delay_us < 0:
            raise UsageError(f"--max-queue-delay-us must be >= 0, got {self.max_queue_delay_us}")
        ports = [p for p in (self.grpc_port, self.http_port, self.metrics_port) if p]
        if len(set(ports)) != len(ports):
            raise UsageError(f"--grpc-port, --http-port and --metrics-port must differ, got {ports}")
        if self.tls:
            self.tls.check()


class MapServer:
    """Starts Triton with the bundle's map net bound once per wire dtype. Use as a context manager."""

    def __init__(self, manifest: Manifest, options: ServeOptions = ServeOptions()):
        options.check()
        self.manifest, self.options = manifest, options
        verify_file(manifest, "map")  # the wire contract (model names) is map.onnx's, whatever runs it
        map_runner(manifest, options.mapnet())  # fails here, in one line, on a missing engine or variant
        self.schemas = [WireSchema.for_bundle(manifest, wire) for wire in options.wires]
        self.triton = None

    @property
    def http_address(self) -> str:
        """Triton's HTTP endpoint has no TLS: with TLS on, HTTP (health checks, metrics) stays on loopback."""
        return "127.0.0.1" if self.options.tls else self.options.address

    def start(self) -> "MapServer":
        from psf.serve.tritonserver import TritonProcess

        self._check_ports_free()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)  # a container stop during startup stops Triton too
        schemas = {wire: schema for wire, schema in zip(self.options.wires, self.schemas)}
        self.triton = TritonProcess(Path(self.manifest.root), schemas, self.options, self.http_address)
        try:
            self.triton.start()
        except BaseException:
            self.stop()
            raise
        log.info("serving %s on grpc :%s http :%s", ", ".join(s.model_name for s in self.schemas),
                 self.options.grpc_port, self.options.http_port)
        return self

    def _check_ports_free(self) -> None:
        """Fail in a second, naming the flag, rather than after Triton's startup."""
        o = self.options
        for flag, port, address in (("--grpc-port", o.grpc_port, o.address), ("--http-port", o.http_port, self.http_address),
                                    ("--metrics-port", o.metrics_port, self.http_address)):
            if not port:
                continue
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((address, port))
                except OSError as exc:
                    raise PsfError(f"{flag} {port}: cannot listen on {address}:{port} ({exc.strerror}); "
                                   f"another server uses it? pick another port with {flag}") from None

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C, or SIGTERM from docker stop / Kubernetes), then stop Triton and
        every backend process within ~10 s."""
        if self.triton is None:
            self.start()
        try:
            while self.triton.alive():
                time.sleep(0.5)
            raise PsfError("Triton stopped on its own; its log above says why")
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        if self.triton is not None:
            self.triton.stop()
            self.triton = None

    def __enter__(self) -> "MapServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
