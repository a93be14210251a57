"""psf-serve's engine: the bundle's mapping net behind an embedded Triton server (PyTriton).

Only map.onnx is loaded: the server never holds an encoder, a decoder or a key. Each bundle is served
as two models, one per wire dtype (fp16, fp32), named by WireSchema. Triton refuses requests whose
names, dtypes, shapes or batch size differ from the model config; the bound function checks again.
Nothing here logs tensor contents.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psf.errors import MissingDependency, PsfError, UsageError
from psf.manifest import Manifest, verify_file
from psf.registry import variant_for
from psf.runtime.ort import OrtRunner
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

    def check(self) -> None:
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


class MapFunction:
    """The callable Triton runs: wire dtype in, map net in fp32, wire dtype out."""

    def __init__(self, runner, schema: WireSchema, max_batch: int):
        self.runner, self.schema, self.max_batch = runner, schema, max_batch

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        if set(inputs) != {self.schema.input_name}:
            raise ValueError(f"model {self.schema.model_name} takes one input {self.schema.input_name!r}, got {sorted(inputs)}")
        latents = inputs[self.schema.input_name]
        self.schema.check_request(latents, self.max_batch)
        mapped = self.runner.infer({self.schema.input_name: latents.astype(np.float32)})[self.schema.output_name]
        return {self.schema.output_name: mapped.astype(self.schema.dtype)}


def _pytriton():
    try:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise MissingDependency("PyTriton (the embedded Triton server)", "serve") from exc
    return batch, DynamicBatcher, ModelConfig, Tensor, Triton, TritonConfig


def _let_backend_stub_find_libpython() -> None:
    """Triton's Python backend stub loads libpython by name. Under a pyenv/shared-lib interpreter it would
    pick the system's, a different patch release, and fail inside multiprocessing (seen here:
    "'_thread.RLock' object has no attribute '_recursion_count'"). Point it at this interpreter's own."""
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if not libdir or not library or not (Path(libdir) / library).exists():
        return
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir not in current.split(os.pathsep):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, current) if p)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class MapServer:
    """Starts Triton with the bundle's map net bound once per wire dtype. Use as a context manager."""

    def __init__(self, manifest: Manifest, options: ServeOptions = ServeOptions()):
        options.check()
        self.manifest, self.options = manifest, options
        self.map_path = verify_file(manifest, "map")  # the wire contract (model names) is map.onnx's, whatever runs it
        self.schemas = [WireSchema.for_bundle(manifest, wire) for wire in options.wires]
        self.runners = [self._runner() for _ in range(options.instances)]
        self.triton = None

    def _runner(self):
        """One map-net runner per instance: ONNX Runtime on the precision's ONNX, or the map engine (TensorRT)."""
        options = self.options
        if options.backend == "trt":
            from psf.runtime.trt import TrtRunner, check_engine

            check_engine(self.manifest, "map", options.precision, None)
            largest = self.manifest.engines["map"][options.precision]["batch"][2]
            if largest < options.max_batch:
                raise UsageError(f"--max-batch {options.max_batch} is larger than the map engine's profile ({largest}); "
                                 f"lower it or rebuild: psf-build {self.manifest.root} --precision {options.precision} "
                                 f"--stages map --batch 1:16:{options.max_batch}")
            return TrtRunner(self.manifest, ("map",), options.precision)
        variant = variant_for(options.precision, options.backend)
        return OrtRunner(verify_file(self.manifest, "map", variant), options.backend, options.threads)

    @property
    def http_address(self) -> str:
        """Triton's HTTP endpoint has no TLS: with TLS on, HTTP (health checks, metrics) stays on loopback."""
        return "127.0.0.1" if self.options.tls else self.options.address

    def _triton_config(self, TritonConfig):
        o = self.options
        tls = {}
        if o.tls:
            tls = dict(grpc_use_ssl=True, grpc_server_cert=Path(o.tls.cert), grpc_server_key=Path(o.tls.key),
                       grpc_use_ssl_mutual=o.tls.mutual)
            if o.tls.ca:
                tls["grpc_root_cert"] = Path(o.tls.ca)
        return TritonConfig(grpc_address=o.address, grpc_port=o.grpc_port, http_address=self.http_address,
                            http_port=o.http_port, metrics_port=o.metrics_port, allow_http=bool(o.http_port),
                            allow_metrics=bool(o.metrics_port), log_verbose=0, log_file=o.log_file,
                            exit_timeout_secs=5, **tls)

    def start(self) -> "MapServer":
        batch, DynamicBatcher, ModelConfig, Tensor, Triton, TritonConfig = _pytriton()
        _let_backend_stub_find_libpython()
        logging.getLogger("pytriton").setLevel(logging.WARNING)
        for runner in self.runners:
            runner.activate()
        o = self.options
        batcher = DynamicBatcher(max_queue_delay_microseconds=o.max_queue_delay_us)
        self._check_ports_free()
        try:
            self.triton = Triton(config=self._triton_config(TritonConfig))
            self.triton.__enter__()
            for schema in self.schemas:
                functions = [batch(MapFunction(runner, schema, o.max_batch)) for runner in self.runners]
                self.triton.bind(
                    model_name=schema.model_name,
                    infer_func=functions if len(functions) > 1 else functions[0],
                    inputs=[Tensor(name=schema.input_name, dtype=schema.dtype.type, shape=schema.input_shape)],
                    outputs=[Tensor(name=schema.output_name, dtype=schema.dtype.type, shape=schema.output_shape)],
                    config=ModelConfig(max_batch_size=o.max_batch, batcher=batcher if o.batching else None),
                    strict=True,
                )
            self.triton.run()
        except Exception as exc:  # PyTriton raises its own types; ports in use are the usual cause
            self.stop()
            raise PsfError(f"Triton did not start ({type(exc).__name__}: {exc}); its log above says why") from exc
        log.info("serving %s on grpc :%s http :%s", ", ".join(s.model_name for s in self.schemas), o.grpc_port, o.http_port)
        return self

    def _check_ports_free(self) -> None:
        """Fail in a second, naming the flag, rather than after PyTriton's two-minute startup wait."""
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
        """Block until interrupted (Ctrl-C, or SIGTERM from docker stop / Kubernetes), then shut down."""
        if self.triton is None:
            self.start()
        signal.signal(signal.SIGTERM, _interrupt)
        self.triton.serve()

    def stop(self) -> None:
        if self.triton is not None:
            self.triton.__exit__(None, None, None)
            self.triton = None
        for runner in self.runners:
            runner.deactivate()

    def __enter__(self) -> "MapServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
