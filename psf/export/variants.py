"""Write a bundle's fp16 / int8 ONNX variants and record how far each is from fp32 (ONNX Runtime, real slices).

Each graph is calibrated on the inputs it really sees: images for encoder and pipeline, the fp32
encoder's latents of those images for the map net, the fp32 map net's latents for the decoder.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np

from psf.errors import BundleError
from psf.export.precision import symmetric_zero_points, to_fp16, to_int8
from psf.registry import GRAPHS, variant_file
from psf.manifest import Manifest, StageFile, sha256_file
from psf.progress import stderr
from psf.runtime.ort import OrtRunner


def _variants(precisions) -> list[str]:
    wanted = []
    if "fp16" in precisions:
        wanted.append("fp16")
    if "int8" in precisions:
        wanted += ["int8", "int8-cpu"]
    return wanted


def run_graph(manifest: Manifest, stage: str, feed: np.ndarray, variant: str = "fp32", batch: int = 16) -> np.ndarray:
    spec = manifest.stage_file(stage, variant)
    with OrtRunner(manifest.path_of(stage, variant), threads=2) as runner:
        parts = [runner.infer({spec.inputs[0].name: feed[i : i + batch]})[spec.outputs[0].name]
                 for i in range(0, len(feed), batch)]
    return np.concatenate(parts)


def graph_inputs(manifest: Manifest, images: np.ndarray) -> dict[str, np.ndarray]:
    """The real input of every graph for these images: {stage: array}, latents from the fp32 graphs."""
    z_image = run_graph(manifest, "encoder", images)
    z_mask = run_graph(manifest, "map", z_image)
    return {"encoder": images, "map": z_image, "decoder": z_mask, "pipeline": images}


def write_variants(manifest: Manifest, precisions, calibration: np.ndarray, calibration_source: str,
                   check_slices: np.ndarray) -> dict[str, dict]:
    """Make the variants, add them to the manifest (saved), return {variant: accuracy vs fp32}."""
    root = manifest.root
    feeds = graph_inputs(manifest, calibration.astype(np.float32))
    check_feeds = graph_inputs(manifest, check_slices.astype(np.float32))
    references = {stage: run_graph(manifest, stage, check_feeds[stage]) for stage in GRAPHS}  # fp32, once
    made = {}
    for variant in _variants(precisions):
        files = {}
        with stderr.status(f"writing {variant} ONNX graphs"):
            for stage in GRAPHS:
                source = manifest.stage_file(stage)
                dst = root / variant_file(source.file, variant)
                if variant == "fp16":
                    to_fp16(root / source.file, dst)
                else:
                    to_int8(root / source.file, dst, feeds[stage], source.inputs[0].name, symmetric=variant == "int8")
                    if variant == "int8" and not symmetric_zero_points(dst):
                        raise BundleError(f"{dst}: a Q/DQ node has a non-zero zero point; TensorRT cannot build it")
                files[stage] = StageFile(dst.name, sha256_file(dst), source.inputs, source.outputs)
        manifest.variants[variant] = files
        made[variant] = accuracy_vs_fp32(manifest, variant, check_feeds, references)
        manifest.variant_info[variant] = {"made_with": _tool(variant), "vs_fp32": made[variant],
                                          **({"calibration": {"source": calibration_source, "slices": len(calibration),
                                                              "method": "minmax", "per_channel_weights": True,
                                                              "activations": "int8 symmetric" if variant == "int8"
                                                              else "uint8 asymmetric"}}
                                             if variant != "fp16" else {})}
    manifest.save(root)
    return made


def accuracy_vs_fp32(manifest: Manifest, variant: str, feeds: dict[str, np.ndarray],
                     references: dict[str, np.ndarray]) -> dict:
    """Per graph: max and median abs error of the variant's output vs the fp32 graph's (`references`, on
    the same `feeds`); for probabilities, the share of pixels whose argmax class changed."""
    report = {}
    for stage in GRAPHS:
        ref = references[stage]
        got = run_graph(manifest, stage, feeds[stage], variant)
        err = np.abs(got.astype(np.float32) - ref)
        row = {"max_abs": float(err.max()), "median_abs": float(np.median(err))}
        if stage in ("decoder", "pipeline"):
            row["argmax_changed"] = float(np.mean(got.argmax(1) != ref.argmax(1)))
        report[stage] = row
    return report


def _tool(variant: str) -> str:
    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    if variant == "fp16":
        return f"onnxconverter-common {ver('onnxconverter-common')} float16 (keep_io_types)"
    return f"onnxruntime {ver('onnxruntime')} quantize_static (QDQ)"
