"""Callables per stage for each backend, fed with the same inputs, so backends compare like for like."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from psf.manifest import Manifest, verify_file
from psf.registry import GRAPHS, PIPELINE, STAGES

# What psf-bench times: each stage, the three chained, and the fused graph.
STAGE_ORDER = (*STAGES, "end_to_end", PIPELINE)


def sample_inputs(manifest: Manifest, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of images in [0, 1] and latents of the declared shapes in (-1, 1)."""
    rng = np.random.default_rng(seed)
    size = manifest.image_size
    shape = lambda spec: [batch, *spec.shape[1:]]  # noqa: E731
    return {
        "image": rng.random((batch, 1, size, size), dtype=np.float32),
        "z_image": rng.uniform(-1, 1, shape(manifest.latent("image"))).astype(np.float32),
        "z_mask": rng.uniform(-1, 1, shape(manifest.latent("mask"))).astype(np.float32),
    }


def ort_calls(manifest: Manifest, inputs: dict[str, np.ndarray], threads: int | None, backend: str = "ort",
              precision: str = "fp32") -> dict[str, Callable]:
    """Stage -> zero-argument callable on ONNX Runtime. end_to_end chains the three stage sessions."""
    from psf.registry import variant_for
    from psf.runtime.ort import OrtRunner

    variant = variant_for(precision, backend)
    runners = {s: OrtRunner(verify_file(manifest, s, variant), backend, threads, spin=s == "pipeline").activate()
               for s in GRAPHS}

    def run(stage: str, feed: np.ndarray) -> np.ndarray:
        spec = manifest.stages[stage]
        return runners[stage].infer({spec.inputs[0].name: feed})[spec.outputs[0].name]

    return {
        "encoder": lambda: run("encoder", inputs["image"]),
        "map": lambda: run("map", inputs["z_image"]),
        "decoder": lambda: run("decoder", inputs["z_mask"]),
        "end_to_end": lambda: run("decoder", run("map", run("encoder", inputs["image"]))),
        "pipeline": lambda: run("pipeline", inputs["image"]),
    }


def trt_calls(manifest: Manifest, inputs: dict[str, np.ndarray], precision: str, graphs: bool,
              opened: list | None = None) -> dict[str, Callable]:
    """Stage -> callable on TensorRT engines (host in, host out, one stream). end_to_end chains the three
    stage engines on the device; pipeline is the fused engine (or the same chain if none was built).
    The activated runners are appended to `opened`: the caller deactivates them (GPU memory)."""
    from psf.runtime.trt import CHAIN, TrtRunner

    runners = {s: TrtRunner(manifest, (s,), precision, graphs=graphs).activate() for s in CHAIN}
    runners["end_to_end"] = TrtRunner(manifest, CHAIN, precision, graphs=graphs).activate()
    runners["pipeline"] = TrtRunner(manifest, ("pipeline",), precision, graphs=graphs).activate()
    if opened is not None:
        opened.extend(runners.values())
    feeds = {"encoder": "image", "map": "z_image", "decoder": "z_mask", "end_to_end": "image", "pipeline": "image"}
    return {stage: (lambda r=runner, x=inputs[feeds[stage]]: r.infer({"input": x})) for stage, runner in runners.items()}


def torch_calls(checkpoint: Path, inputs: dict[str, np.ndarray], threads: int | None) -> dict[str, Callable]:
    """The same stages in torch eager mode (fp32, no_grad, eval), from the checkpoint the bundle came from."""
    import torch

    from psf.export.graphs import Decoder, Encoder, Mapping, Pipeline
    from psf.train.checkpoint import load_checkpoint

    if threads:
        torch.set_num_threads(threads)
    nets, _ = load_checkpoint(checkpoint)
    enc, mapping, dec, pipe = (cls(nets).eval() for cls in (Encoder, Mapping, Decoder, Pipeline))
    x, zx, zy = (torch.from_numpy(inputs[k]) for k in ("image", "z_image", "z_mask"))

    def no_grad(fn):
        def call():
            with torch.inference_mode():
                return fn()
        return call

    return {
        "encoder": no_grad(lambda: enc(x)),
        "map": no_grad(lambda: mapping(zx)),
        "decoder": no_grad(lambda: dec(zy)),
        "end_to_end": no_grad(lambda: dec(mapping(enc(x)))),
        "pipeline": no_grad(lambda: pipe(x)),
    }
