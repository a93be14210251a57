"""The wire contract between a client and the map server, derived from the bundle's manifest.

Only encoded latents cross: one input tensor (the image latent) and one output tensor (the mask
latent), fixed per-slice shape, fp16 by default. The model name carries the first 12 hex digits of
map.onnx's sha256, so a client can only reach the map net its own encoder and decoder were made with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psf.errors import UsageError
from psf.manifest import Manifest
from psf.serve.guard import RequestRefused

WIRE_DTYPES = {"fp16": np.dtype(np.float16), "fp32": np.dtype(np.float32)}
TRITON_DTYPES = {np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32"}
DEFAULT_MAX_BATCH = 64


def wire_name(dtype) -> str:
    """'fp16' / 'fp32' for a numpy dtype or one of those names."""
    if isinstance(dtype, str) and dtype in WIRE_DTYPES:
        return dtype
    dtype = np.dtype(dtype)
    for name, known in WIRE_DTYPES.items():
        if known == dtype:
            return name
    raise UsageError(f"wire dtype {dtype} is not supported; choose one of {', '.join(WIRE_DTYPES)}")


@dataclass(frozen=True)
class WireSchema:
    """What one map request and its response look like for one bundle and wire dtype."""

    model_name: str
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]   # per slice, no batch dimension
    output_shape: tuple[int, ...]
    dtype: np.dtype
    map_sha256: str

    @classmethod
    def for_bundle(cls, manifest: Manifest, wire: str = "fp16") -> "WireSchema":
        wire = wire_name(wire)
        stage = manifest.stages["map"]
        source, target = stage.inputs[0], stage.outputs[0]
        return cls(model_name=f"psf_map_{stage.sha256[:12]}_{wire}", input_name=source.name, output_name=target.name,
                   input_shape=tuple(int(d) for d in source.shape[1:]), output_shape=tuple(int(d) for d in target.shape[1:]),
                   dtype=WIRE_DTYPES[wire], map_sha256=stage.sha256)

    @property
    def triton_dtype(self) -> str:
        return TRITON_DTYPES[self.dtype]

    def slice_bytes(self) -> dict[str, int]:
        """Payload bytes per slice: up (client -> server) and down."""
        size = self.dtype.itemsize
        return {"up": int(np.prod(self.input_shape)) * size, "down": int(np.prod(self.output_shape)) * size}

    def check_request(self, latents: np.ndarray, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        """Refuse anything but a finite (n, *input_shape) batch of the wire dtype, 1 <= n <= max_batch.

        Raises RequestRefused (a ValueError) with a one-line message for the client. Triton checks name,
        dtype and shape against the model config, but it truncates a declared batch dimension to 32 bits
        (2**32 arrives without its batch dimension), so the check is repeated on each request where the
        data is used, before it joins a batch.
        """
        if latents.dtype != self.dtype:
            raise RequestRefused("dtype", f"{self.input_name}: dtype {latents.dtype}, model {self.model_name} takes {self.dtype}")
        if latents.ndim != 1 + len(self.input_shape) or tuple(latents.shape[1:]) != self.input_shape:
            raise RequestRefused("shape", f"{self.input_name}: shape {list(latents.shape)}, this model takes "
                                          f"[n, {', '.join(map(str, self.input_shape))}] with n the slices sent")
        if not 1 <= latents.shape[0] <= max_batch:
            raise RequestRefused("batch", f"{self.input_name}: {latents.shape[0]} slices in one request, the limit is {max_batch}")
        if not np.isfinite(latents).all():
            raise RequestRefused("nonfinite", f"{self.input_name}: contains NaN or infinity; latents from the bundle's encoder are finite")
