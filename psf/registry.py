"""Pure data: the bundle's stages and files, model-file suffixes -> backends. The CLI reads its choices here."""

from __future__ import annotations

# The data path, in order. Each stage is one ONNX file in a bundle; the pipeline fuses all three.
STAGES = ("encoder", "map", "decoder")
PIPELINE = "pipeline"
CLIENT_STAGES = ("encoder", "decoder")  # what a hospital runs in split mode; the map net is the server's
GRAPHS = (*STAGES, PIPELINE)  # every ONNX graph of a bundle (and every engine psf-build makes)
BUNDLE_FILES = {stage: f"{stage}.onnx" for stage in GRAPHS}
MANIFEST_NAME = "psf.json"

# Model file suffix -> backend that runs it (".plan" engines come with psf-build).
SUFFIX_BACKEND = {
    ".onnx": "ort",
    ".plan": "trt",
    ".engine": "trt",
}
# Training checkpoints (psf-train): data for psf-export, never run by psf-infer (the edge path has no torch).
CHECKPOINT_SUFFIXES = (".pt", ".pth")

# Backends psf-infer offers, with what each needs.
BACKENDS = {
    "ort": "ONNX Runtime on CPU (default)",
    "ort-cuda": "ONNX Runtime with the CUDA execution provider (extra: gpu)",
    "trt": "TensorRT engines from psf-build (extra: trt; an NVIDIA GPU or Jetson)",
}

# Precisions a user asks for, and the ONNX variants that serve them (psf.export.precision makes them).
# fp32 is the bundle's own graphs; int8 has a TensorRT file (symmetric) and an ONNX Runtime file (uint8).
PRECISIONS = ("fp32", "fp16", "int8")
VARIANTS = ("fp16", "int8", "int8-cpu")


def variant_for(precision: str, backend: str) -> str:
    """The ONNX variant `backend` runs for `precision`."""
    from psf.errors import UsageError

    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and backend.startswith("ort"):
        return "int8-cpu"
    return precision


def variant_file(stage_file: str, variant: str) -> str:
    """encoder.onnx -> encoder.fp16.onnx / encoder.int8.onnx / encoder.int8-cpu.onnx."""
    stem = stage_file[: -len(".onnx")] if stage_file.endswith(".onnx") else stage_file
    return f"{stem}.{variant}.onnx"
