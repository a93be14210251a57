"""Which runner computes the map net on the server: ONNX Runtime on a precision's ONNX, or the map engine.

Used twice: by psf-serve before Triton starts (so a missing engine or a wrong flag fails in one line at
once) and by each Triton model instance, which builds and activates its own runner.
"""

from __future__ import annotations

from dataclasses import dataclass

from psf.errors import UsageError
from psf.manifest import Manifest, verify_file
from psf.registry import variant_for


@dataclass(frozen=True)
class MapNetOptions:
    backend: str = "ort"
    precision: str = "fp32"  # the map net's compute (its ONNX variant or engine); the wire dtype is separate
    threads: int | None = None
    max_batch: int = 64


def map_runner(manifest: Manifest, options: MapNetOptions):
    """An inactive runner of the bundle's map net (hashes checked)."""
    if options.backend == "trt":
        from psf.runtime.engines import check_engine
        from psf.runtime.trt import TrtRunner

        check_engine(manifest, "map", options.precision, None)
        largest = manifest.engines["map"][options.precision]["batch"][2]
        if largest < options.max_batch:
            raise UsageError(f"--max-batch {options.max_batch} is larger than the map engine's profile ({largest}); "
                             f"lower it or rebuild: psf-build {manifest.root} --precision {options.precision} "
                             f"--stages map --batch 1:16:{options.max_batch}")
        return TrtRunner(manifest, ("map",), options.precision)
    from psf.runtime.ort import OrtRunner

    variant = variant_for(options.precision, options.backend)
    return OrtRunner(verify_file(manifest, "map", variant), options.backend, options.threads)
