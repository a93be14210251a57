"""ONNX Runtime backend: a loader that makes the session and a runner with activate/infer/deactivate.

Chained sessions run with intra-op spinning off: on 2 cores, sessions whose idle threads spin fight
for the cores (3x slower in ../shared/TOOLCHAIN.md's measurement). A session that runs alone (the fused
pipeline) spins: its int8 pipeline ran at 2.95 ms per slice spinning and 3.5-4.4 ms not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.errors import BundleError, MissingDependency, UsageError

PROVIDERS = {"ort": ["CPUExecutionProvider"], "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependency("ONNX Runtime", "gpu' or 'privacy-sf") from exc
    return onnxruntime


def session_from_onnx(path: str | Path, backend: str = "ort", threads: int | None = None, spin: bool = False):
    """An InferenceSession for `path` on `backend`'s providers, `threads` intra-op threads, spinning if `spin`."""
    ort = _ort()
    if backend not in PROVIDERS:
        raise UsageError(f"unknown ONNX Runtime backend {backend!r}; choose one of {', '.join(PROVIDERS)}")
    providers = PROVIDERS[backend]
    missing = [p for p in providers[:-1] if p not in ort.get_available_providers()]
    if missing:
        raise MissingDependency(f"ONNX Runtime with {missing[0]}", "gpu")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BundleError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc}); re-export the bundle") from exc


class OrtRunner:
    """Runs one ONNX graph. Construction is cheap; the session is made on activate()."""

    def __init__(self, path: str | Path, backend: str = "ort", threads: int | None = None, spin: bool = False):
        self.path, self.backend, self.threads, self.spin = Path(path), backend, threads, spin
        self.session = None

    def activate(self) -> "OrtRunner":
        if self.session is None:
            self.session = session_from_onnx(self.path, self.backend, self.threads, self.spin)
        return self

    def deactivate(self) -> None:
        self.session = None

    def __enter__(self) -> "OrtRunner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.activate().session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.activate().session.get_outputs()]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.activate().session
        outputs = session.run(None, feed)
        return dict(zip(self.output_names, outputs))
