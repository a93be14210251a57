"""Start `psf serve` as a child process on free loopback ports and wait until Triton says it is ready.

What psf-bench --load and the tests use: the server runs in its own process, as in production, so the
clients' threads and the server do not share an interpreter.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from psf.errors import PsfError

READY_BANNER = "Ctrl-C stops."  # the last line psf serve prints once Triton runs with every model bound


def free_ports(count: int) -> list[int]:
    """Ports the kernel has just handed out as free (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class LoopbackServer:
    """`psf serve BUNDLE` on 127.0.0.1 with `extra_args`; `.grpc_url` / `.http_url` once started."""

    bundle: Path
    extra_args: tuple[str, ...] = ()
    start_timeout_s: float = 120.0

    def __post_init__(self):
        self.grpc_port, self.http_port, self.metrics_port = free_ports(3)
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile("w+", prefix="psf-serve-", suffix=".log", delete=False)

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start_process(self) -> subprocess.Popen:
        """Start `psf serve` and return at once (start() also waits until it is ready)."""
        command = [sys.executable, "-m", "psf", "serve", str(self.bundle), "--address", "127.0.0.1",
                   "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
                   "--metrics-port", str(self.metrics_port), *self.extra_args]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.process

    def start(self) -> "LoopbackServer":
        self.start_process()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PsfError(f"psf serve exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise PsfError(f"psf serve was not ready after {self.start_timeout_s:.0f} s:\n{self.log_text()[-3000:]}")

    def ready(self) -> bool:
        """`psf serve` has printed its banner, and Triton and every wire's map model say ready.

        psf-serve's /v2/health/ready alone means every model is loaded (strict readiness, models loaded
        at startup); the per-model checks stay as a belt to that brace. HTTP stays on loopback with TLS on."""
        from psf.manifest import load_manifest
        from psf.serve.schema import WIRE_DTYPES, WireSchema

        if READY_BANNER not in self.log_text():
            return False
        manifest = load_manifest(self.bundle)
        models = [WireSchema.for_bundle(manifest, wire).model_name for wire in WIRE_DTYPES]
        try:
            for path in ("/v2/health/ready", *(f"/v2/models/{model}/ready" for model in models)):
                with urllib.request.urlopen(f"{self.http_url}{path}", timeout=2) as answer:
                    if answer.status != 200:
                        return False
            return True
        except OSError:
            return False

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        Path(self.log.name).unlink(missing_ok=True)
