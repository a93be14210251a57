"""Images -> class probabilities through a bundle, in batches: local (one graph) or staged (three graphs).

Staged mode is what a split deployment runs: encode on the client, map on the server, decode on the
client; here the three run in one process and the latents are rounded to the wire dtype in between,
so the accuracy cost of the wire format is measured without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psf.manifest import Manifest, verify_file
from psf.runtime.ort import OrtRunner

MODES = ("local", "staged")


@dataclass(frozen=True)
class SegmenterOptions:
    backend: str = "ort"
    mode: str = "local"
    batch_size: int = 16
    threads: int | None = None
    wire_dtype: str | None = None  # staged mode; None -> the manifest's


class Segmenter:
    """Runs the bundle's graphs on (n, 1, S, S) float32 batches. Use as a context manager."""

    def __init__(self, manifest: Manifest, options: SegmenterOptions = SegmenterOptions()):
        self.manifest, self.options = manifest, options
        stages = ("pipeline",) if options.mode == "local" else ("encoder", "map", "decoder")
        self.runners = {s: OrtRunner(verify_file(manifest, s), options.backend, options.threads) for s in stages}
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
        z_image = self._over_wire(self._run("encoder", images))
        z_mask = self._over_wire(self._run("map", z_image))
        return self._run("decoder", z_mask)

    def _run(self, stage: str, feed: np.ndarray) -> np.ndarray:
        spec = self.manifest.stages[stage]
        return self.runners[stage].infer({spec.inputs[0].name: feed})[spec.outputs[0].name]

    def _over_wire(self, latent: np.ndarray) -> np.ndarray:
        return latent.astype(self.wire).astype(np.float32)
