"""psf-build --verify: each engine against ONNX Runtime on real inputs, with the thresholds users rely on.

An engine is compared with ONNX Runtime running the very ONNX file it was built from (what Polygraphy
does), and the masks it yields with the fp32 masks (Dice change; against the labels when there are some).
    fp32: max abs error <= 1e-4 on latents (encoder, map) and probabilities (psf-build turns TF32 off
          for fp32 engines; with it on, Ampere and later GPUs differ by ~1e-3)
    fp16: median abs error <= 1e-3; Dice change >= -0.005
    int8: Dice change >= -0.01 (errors reported, not judged: Q/DQ rounding differs between the two)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psf.manifest import Manifest
from psf.metrics import confusion_counts, report
from psf.registry import PIPELINE

LIMITS = {"fp32": {"max_abs": 1e-4}, "fp16": {"median_abs": 1e-3, "dice_change": -0.005}, "int8": {"dice_change": -0.01}}


@dataclass(frozen=True)
class StageCheck:
    stage: str
    precision: str
    max_abs: float
    median_abs: float
    dice_change: float | None  # mask-producing stages only

    def failures(self) -> list[str]:
        limits = LIMITS[self.precision]
        out = []
        if "max_abs" in limits and self.max_abs > limits["max_abs"]:
            out.append(f"max abs error {self.max_abs:.2e} > {limits['max_abs']:.0e}")
        if "median_abs" in limits and self.median_abs > limits["median_abs"]:
            out.append(f"median abs error {self.median_abs:.2e} > {limits['median_abs']:.0e}")
        if "dice_change" in limits and self.dice_change is not None and self.dice_change < limits["dice_change"]:
            out.append(f"Dice change {self.dice_change:+.4f} < {limits['dice_change']}")
        return out


def verify_engines(manifest: Manifest, precision: str, stages, images: np.ndarray, truth: np.ndarray | None = None) -> list[StageCheck]:
    """Run each built engine of `precision` and ONNX Runtime on the same real inputs."""
    from psf.export.variants import graph_inputs, run_graph
    from psf.runtime.trt import TrtRunner

    feeds = graph_inputs(manifest, images)
    fp32_probs = run_graph(manifest, PIPELINE, images)
    reference = truth if truth is not None else fp32_probs.argmax(1)
    checks = []
    for stage in stages:
        spec = manifest.stage_file(stage, precision)
        with TrtRunner(manifest, (stage,), precision) as runner:
            got = runner.infer({spec.inputs[0].name: feeds[stage]})[spec.outputs[0].name]
        ort = run_graph(manifest, stage, feeds[stage], precision)
        err = np.abs(got.astype(np.float32) - ort.astype(np.float32))
        dice_change = None
        if stage in ("decoder", PIPELINE):  # psf.metrics: the same Dice every report prints
            scores = [report(confusion_counts(p.argmax(1), reference, len(manifest.labels)), manifest.labels)["mean_dice"]
                      for p in (got, fp32_probs)]
            dice_change = scores[0] - scores[1]
        checks.append(StageCheck(stage, precision, float(err.max()), float(np.median(err)), dice_change))
    return checks
