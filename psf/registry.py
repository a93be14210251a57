"""Pure data: the bundle's stages, file suffixes -> backends, precisions. The CLI reads its choices here."""

from __future__ import annotations

# The data path, in order. Each stage is one ONNX file in a bundle.
STAGES = ("encoder", "map", "decoder")
PIPELINE = "pipeline"
BUNDLE_FILES = {stage: f"{stage}.onnx" for stage in (*STAGES, PIPELINE)}
MANIFEST_NAME = "psf.json"

# Where each stage runs in split mode.
CLIENT_STAGES = ("encoder", "decoder")
SERVER_STAGES = ("map",)

# Model file suffix -> backend that runs it.
SUFFIX_BACKEND = {
    ".onnx": "ort",
    ".plan": "trt",
    ".engine": "trt",
    ".pt": "torch",
}

# Backends psf-infer offers, with what each needs installed (the extra to install).
BACKENDS = {
    "ort": "ONNX Runtime on CPU (default)",
    "ort-cuda": "ONNX Runtime with the CUDA execution provider (extra: gpu)",
}
BACKEND_EXTRA = {"ort": "", "ort-cuda": "gpu"}

PRECISIONS = ("fp32",)

# Latent dtypes the wire format may use between client and server.
WIRE_DTYPES = ("float16", "float32")

# Scan suffixes psf.io reads, longest first so ".nii.gz" wins over ".gz".
SCAN_SUFFIXES = (".nii.gz", ".nii", ".png")
