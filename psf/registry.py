"""Pure data: the bundle's stages and files, model-file suffixes -> backends. The CLI reads its choices here."""

from __future__ import annotations

# The data path, in order. Each stage is one ONNX file in a bundle; the pipeline fuses all three.
STAGES = ("encoder", "map", "decoder")
PIPELINE = "pipeline"
BUNDLE_FILES = {stage: f"{stage}.onnx" for stage in (*STAGES, PIPELINE)}
MANIFEST_NAME = "psf.json"

# Model file suffix -> backend that runs it (".plan" engines come with psf-build).
SUFFIX_BACKEND = {
    ".onnx": "ort",
    ".plan": "trt",
    ".engine": "trt",
    ".pt": "torch",
}

# Backends psf-infer offers, with what each needs.
BACKENDS = {
    "ort": "ONNX Runtime on CPU (default)",
    "ort-cuda": "ONNX Runtime with the CUDA execution provider (extra: gpu)",
}
