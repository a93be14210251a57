"""Export a checkpoint to a bundle: four ONNX graphs, metadata_props, onnx.checker, parity vs torch."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from psf import __version__
from psf.errors import PsfError
from psf.export.calibration import template_slices
from psf.export.graphs import GRAPHS, Decoder, Encoder
from psf.io.atomic import atomic_path
from psf.manifest import Manifest, StageFile, TensorSpec, sha256_file
from psf.registry import BUNDLE_FILES
from psf.train.checkpoint import load_checkpoint

OPSET = 20
MAX_BATCH = 1024
# ONNX Runtime must match torch within this on every output (fp32, same weights).
PARITY_TOLERANCE = 1e-4
# The fused pipeline compounds three graphs and a softmax: its probabilities get 5x that.
PIPELINE_TOLERANCE = 5e-4


@dataclass(frozen=True)
class ExportResult:
    manifest: Manifest
    parity: dict[str, float]
    variants: dict[str, dict] = None  # variant -> accuracy against fp32 (psf.export.variants.write_variants)


def export_bundle(checkpoint: Path, out: Path, parity_slices: np.ndarray | None = None, quiet: bool = False,
                  precisions: tuple[str, ...] = ("fp32",), calibration: np.ndarray | None = None,
                  calibration_source: str = "", key=None) -> ExportResult:
    """Write out/{encoder,map,decoder,pipeline}.onnx and out/psf.json; check parity on `parity_slices`
    ((n, C, S, S) preprocessed real slices; default: slices of the MNI152 template). With fp16/int8 in
    `precisions`, also write those ONNX variants, int8 calibrated on `calibration` (default: MNI152 slices).
    A model trained with a consortium key needs `key` (psf.models.key): it is folded into encoder and decoder.

    The bundle is written to a staging folder beside `out` and moved into place only after every parity check
    passed: a failed check leaves no bundle that psf-infer would accept (and an existing `out` untouched)."""
    from psf.io.atomic import atomic_folder
    from psf.models.key import require_key

    nets, ckpt = load_checkpoint(checkpoint)
    require_key(key, ckpt.get("key_id"), str(checkpoint))
    check_replaceable(Path(out))
    with atomic_folder(out) as staging:
        result = _write_bundle(nets, ckpt, checkpoint, staging, parity_slices, precisions, calibration,
                               calibration_source, key)
    result.manifest.root = Path(out)
    return result


# What a bundle folder holds: what may be replaced when a new bundle is exported over an old one.
BUNDLE_PATTERNS = ("psf.json", "*.onnx", "*.plan", "*.engine", "*.timing-cache", "*.cache")


def check_replaceable(out: Path) -> None:
    """An export replaces `out` whole: refuse unless it is new, empty or a bundle with nothing else in it (so
    `psf-export model.pt -o demo/` cannot sweep away the data or the checkpoint beside a bundle)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise PsfError(f"{out} is a file; give psf-export a folder for the bundle (-o bundle/)")
    others = sorted(p.name for p in out.iterdir() if not any(p.match(pattern) for pattern in BUNDLE_PATTERNS))
    if others or (any(out.iterdir()) and not (out / "psf.json").is_file()):
        shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
        raise PsfError(f"{out} is not a bundle folder (it holds {shown or 'files without psf.json'}); export replaces "
                       "the whole folder, so give a new or empty one, e.g. -o " + str(out / "bundle"))


def _write_bundle(nets, ckpt: dict, checkpoint: Path, out: Path, parity_slices, precisions, calibration,
                  calibration_source: str, key) -> ExportResult:
    """export_bundle's work, into the folder `out`; raises on any failed check."""
    cfg = nets.config
    samples = {"image": torch.rand(2, cfg.in_channels, cfg.image_size, cfg.image_size)}
    with torch.no_grad():
        samples["z_image"] = Encoder(nets, key)(samples["image"])
        samples["z_mask"] = nets.mapping(samples["z_image"])
    stages: dict[str, StageFile] = {}
    common_meta = {
        "psf.format": "psf-bundle/1",
        "psf.version": __version__,
        "psf.labels": json.dumps(ckpt["labels"]),
        "psf.normalization": json.dumps(ckpt["normalization"]),
        "psf.channels": json.dumps(checkpoint_channels(ckpt, cfg.in_channels)),
        "psf.modality": str(ckpt.get("modality", "MR")),
        "psf.image_size": str(cfg.image_size),
        "psf.slice_axis": str(ckpt.get("slice_axis", 2)),
    }
    for stage, (graph_cls, input_name, output_name) in GRAPHS.items():
        module = graph_cls(nets, key).eval()
        sample = samples[input_name]
        with torch.no_grad():
            result = module(sample)
        path = out / BUNDLE_FILES[stage]
        _export_graph(module, sample, input_name, output_name, path)
        meta = {**common_meta, "psf.stage": stage, "psf.input": input_name, "psf.output": output_name}
        _finish_onnx(path, meta)
        stages[stage] = StageFile(
            file=path.name,
            sha256=sha256_file(path),
            inputs=[TensorSpec(input_name, ["N", *sample.shape[1:]], "float32")],
            outputs=[TensorSpec(output_name, ["N", *result.shape[1:]], "float32")],
        )
    manifest = Manifest(
        image_size=cfg.image_size,
        labels=list(ckpt["labels"]),
        normalization=ckpt["normalization"],
        slice_axis=int(ckpt.get("slice_axis", 2)),
        opset=OPSET,
        stages=stages,
        source={"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                "config": cfg.to_dict(), "test_metrics": ckpt["metrics"].get("test", {}),
                "privacy": _dp_summary(ckpt),
                "dataset": (ckpt.get("training") or {}).get("dataset", {}).get("name")},  # the mapping net's (epsilon, delta) and unit; null: not trained with DP
        psf_version=__version__,
        key_id=key.key_id if key is not None else None,
        channels=checkpoint_channels(ckpt, cfg.in_channels),
        modality=str(ckpt.get("modality", "MR")),
        root=out,
    )
    manifest.save(out)
    if parity_slices is None:
        parity_slices = _template_input(cfg, ckpt["normalization"])
    parity = check_parity(nets, manifest, parity_slices, key)
    variants = {}
    if set(precisions) - {"fp32"}:
        from psf.export.variants import write_variants

        if calibration is None:
            calibration = _template_input(cfg, ckpt["normalization"], count=64, span=(0.15, 0.85))
            calibration_source = calibration_source or "MNI152 T1 template (nilearn), 64 axial slices"
        variants = write_variants(manifest, precisions, calibration, calibration_source, parity_slices)
    return ExportResult(manifest=manifest, parity=parity, variants=variants)


def _dp_summary(ckpt: dict) -> dict | None:
    from psf.train.dp import privacy_summary

    return privacy_summary(ckpt.get("training"))


def checkpoint_channels(ckpt: dict, in_channels: int) -> list[str]:
    """The input channels' names (checkpoints from before channels were recorded: one T1 channel)."""
    return list(ckpt.get("channels") or (["T1"] if in_channels == 1 else [f"channel{c}" for c in range(in_channels)]))


def _template_input(cfg, normalization, **kwargs) -> np.ndarray:
    """Template slices as the model's input: each channel the T1 template under that channel's spec (the
    numbers are what parity and int8 ranges need; a CT or multi-channel model gets plausible ranges, not anatomy)."""
    from psf.pipeline.preprocess import channel_specs

    specs = channel_specs(normalization, cfg.in_channels)
    return np.concatenate([template_slices(cfg.image_size, spec, **kwargs) for spec in specs], axis=1)


def _export_graph(module: torch.nn.Module, sample: torch.Tensor, input_name: str, output_name: str, path: Path) -> None:
    # The exporter logs a warning per torchvision op it cannot register; torchvision is not used here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    arg_name = next(iter(module.forward.__code__.co_varnames[1:2]))
    with warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (sample,), input_names=[input_name], output_names=[output_name],
            dynamic_shapes={arg_name: {0: batch}}, opset_version=OPSET, dynamo=True, external_data=False,
            verbose=False,
        )
        program.save(str(tmp))


def _finish_onnx(path: Path, metadata: dict[str, str]) -> None:
    """Mirror the manifest's facts into metadata_props, then run the full onnx.checker."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "privacy-sf"
    model.producer_version = __version__
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)


def check_parity(nets, manifest: Manifest, images: np.ndarray, key=None) -> dict[str, float]:
    """Max abs error of each ONNX graph (ONNX Runtime) against torch on real inputs; raise above tolerance."""
    from psf.runtime.ort import OrtRunner

    with torch.no_grad():
        x = torch.from_numpy(images)
        z_image = Encoder(nets, key)(x)
        z_mask = nets.mapping(z_image)
        probs = Decoder(nets, key)(z_mask)
    feeds = {"encoder": (images, z_image), "map": (z_image.numpy(), z_mask), "decoder": (z_mask.numpy(), probs),
             "pipeline": (images, probs)}
    errors = {}
    for stage, (feed, expected) in feeds.items():
        with OrtRunner(manifest.path_of(stage), threads=2) as runner:
            (got,) = runner.infer({runner.input_names[0]: feed}).values()
        errors[stage] = float(np.max(np.abs(got - expected.numpy())))
    for stage, error in errors.items():
        if error > tolerance(stage):
            raise PsfError(f"parity check failed: {stage}.onnx differs from torch by {error:.2e} "
                           f"(tolerance {tolerance(stage):.0e}); the export is not trustworthy")
    return errors


def tolerance(stage: str) -> float:
    return PIPELINE_TOLERANCE if stage == "pipeline" else PARITY_TOLERANCE
