"""Images -> class probabilities through a bundle, in batches: local (one graph), staged or split.

Staged mode runs what a split deployment runs (encode, map, decode) in one process, with the latents
rounded to the wire dtype in between, so the wire format's accuracy cost is measured without a server.
Split mode is the deployment itself: encode and decode here, map on a server (psf.serve.client).
Backends: ONNX Runtime (any precision's ONNX) or TensorRT engines (psf.runtime.trt; local mode chains
the three stage engines on the GPU when no fused pipeline engine was built).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from psf.registry import CLIENT_STAGES, PIPELINE, STAGES, variant_for
from psf.manifest import Manifest, verify_file
from psf.runtime.ort import OrtRunner

MODES = ("local", "staged", "split")
LatentMap = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SegmenterOptions:
    backend: str = "ort"
    mode: str = "local"
    batch_size: int = 16
    threads: int | None = None
    precision: str = "fp32"  # fp16 / int8: the bundle's ONNX variants (psf.export.precision)
    wire_dtype: str | None = None  # staged mode; None -> the manifest's
    remote: LatentMap | None = None  # split mode: image latents -> mask latents, e.g. a RemoteMap


def open_runner(manifest: Manifest, stage: str, options: SegmenterOptions, alone: bool):
    """The runner of one stage on the chosen backend (made lazily: activate() loads it)."""
    if options.backend == "trt":
        from psf.runtime.trt import TrtRunner

        return TrtRunner(manifest, (stage,), options.precision)
    variant = variant_for(options.precision, options.backend)
    # A session alone may spin its idle threads; chained ones must not (psf.runtime.ort).
    return OrtRunner(verify_file(manifest, stage, variant), options.backend, options.threads, spin=alone)


class Segmenter:
    """Runs the bundle's graphs on (n, 1, S, S) float32 batches. Use as a context manager."""

    def __init__(self, manifest: Manifest, options: SegmenterOptions = SegmenterOptions()):
        self.manifest, self.options = manifest, options
        stages = {"local": (PIPELINE,), "staged": STAGES, "split": CLIENT_STAGES}[options.mode]
        if (options.mode == "split") != (options.remote is not None):
            raise ValueError("split mode needs a remote map, and only split mode takes one")
        self.runners = {s: open_runner(manifest, s, options, alone=len(stages) == 1) for s in stages}
        self.wire = np.dtype(options.wire_dtype or manifest.wire_dtype)

    def __enter__(self) -> "Segmenter":
        for runner in self.runners.values():
            runner.activate()
        return self

    def __exit__(self, *exc) -> None:
        for runner in self.runners.values():
            runner.deactivate()

    def probs(self, images: np.ndarray) -> np.ndarray:
        """(n, 1, S, S) float32 -> (n, classes, S, S) float32, `batch_size` slices per call."""
        out = [self._batch(images[i : i + self.options.batch_size]) for i in range(0, len(images), self.options.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.manifest.num_classes, *images.shape[2:]), np.float32)

    def _batch(self, images: np.ndarray) -> np.ndarray:
        if "pipeline" in self.runners:
            return self._run("pipeline", images)
        z_image = self._run("encoder", images)
        if self.options.remote is not None:
            z_mask = self.options.remote(z_image)
        else:
            z_mask = self._over_wire(self._run("map", self._over_wire(z_image)))
        return self._run("decoder", z_mask)

    def _run(self, stage: str, feed: np.ndarray) -> np.ndarray:
        spec = self.manifest.stages[stage]
        return self.runners[stage].infer({spec.inputs[0].name: feed})[spec.outputs[0].name]

    def _over_wire(self, latent: np.ndarray) -> np.ndarray:
        return latent.astype(self.wire).astype(np.float32)
