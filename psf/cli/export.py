"""psf-export: model.pt -> ONNX bundle with manifest, checked and compared with torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, reports_errors


def export(
    checkpoint: Annotated[Path, typer.Argument(help="model.pt from psf-train.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Bundle folder (default: bundle/ beside the checkpoint).")] = None,
    triton_repo: Annotated[Optional[Path], typer.Option(help="Also write a Triton model repository for the map net here (for a tritonserver fleet).")] = None,
    triton_kind: Annotated[str, typer.Option(help="Triton instance kind in that repository: gpu, cpu or auto.")] = "gpu",
    triton_instances: Annotated[int, typer.Option(help="Model instances per GPU (or on the CPU) in that repository.")] = 1,
    triton_max_batch: Annotated[int, typer.Option(help="max_batch_size in that repository.")] = 64,
    overwrite: Annotated[bool, typer.Option(help="Replace models already in --triton-repo.")] = False,
    precision: Annotated[str, typer.Option(help="Comma-separated ONNX precisions to write: fp32 (always), fp16, int8 (Q/DQ, for psf-build and psf-infer --precision).")] = "fp32,fp16,int8",
    calibration: Annotated[Optional[Path], typer.Option(help="Folder of scans to calibrate int8 on, e.g. the training images (default: the MNI152 template).")] = None,
    calibration_slices: Annotated[int, typer.Option(help="Slices drawn from --calibration for int8.")] = 64,
    key: Annotated[Optional[Path], typer.Option(help="The consortium key the model was trained with (psf-train --key): folded into encoder and decoder; the bundle records only its id.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Export encoder, map, decoder and the fused pipeline to ONNX (fp32, and fp16 / int8 copies), with psf.json and parity checks."""
    triton = dict(out=triton_repo, kind=triton_kind, instances=triton_instances, max_batch=triton_max_batch, overwrite=overwrite)
    reports_errors(_export)(checkpoint, out, triton, precision, calibration, calibration_slices, key, debug=debug)


def write_triton_repo(manifest, out: Path, kind: str = "gpu", instances: int = 1, max_batch: int = 64,
                      overwrite: bool = False) -> None:
    """Shared by psf-export --triton-repo and psf-serve --write-repo."""
    from psf.serve.repository import RepositoryOptions, write_repository

    options = RepositoryOptions(max_batch=max_batch, instances=instances, kind=f"KIND_{kind.upper()}", overwrite=overwrite)
    for folder in write_repository(manifest, out, options):
        print(f"wrote Triton model {folder}")


def parse_precisions(text: str) -> tuple[str, ...]:
    from psf.errors import UsageError
    from psf.registry import PRECISIONS

    chosen = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in chosen if p not in PRECISIONS]
    if unknown or not chosen:
        raise UsageError(f"--precision {text!r}: use a comma-separated list of {', '.join(PRECISIONS)}")
    return chosen


def _export(checkpoint: Path, out: Path | None, triton: dict, precision: str, calibration: Path | None,
            calibration_slices: int, key_file: Path | None) -> None:
    from psf.export.onnx import export_bundle, tolerance
    from psf.progress import stderr

    precisions = parse_precisions(precision)
    out = out or checkpoint.parent / "bundle"
    key = None
    if key_file is not None:
        from psf.models.key import ConsortiumKey

        key = ConsortiumKey.load(key_file)
    calib = None
    if calibration is not None and "int8" in precisions:
        from psf.export.calibration import calibration_slices as read_calibration
        from psf.train.checkpoint import load_checkpoint

        nets, ckpt = load_checkpoint(checkpoint)
        if nets.config.in_channels > 1:
            from psf.errors import UsageError

            raise UsageError(f"--calibration reads single-channel scans; {checkpoint} takes {nets.config.in_channels} "
                             "channels: drop --calibration (int8 then calibrates on the template, per channel) or "
                             "export --precision fp32,fp16")
        calib = read_calibration(calibration, nets.config.image_size, ckpt["normalization"], calibration_slices,
                                 axis=int(ckpt.get("slice_axis", 2)))
    with stderr.status(f"exporting {checkpoint} to {out}"):
        result = export_bundle(checkpoint, out, precisions=precisions, calibration=calib, key=key,
                               calibration_source=f"{calibration} ({calibration_slices} slices)" if calibration else "")
    for stage, err in result.parity.items():
        stderr.print(f"parity {stage:9s} max abs error vs torch {err:.2e} (tolerance {tolerance(stage):.0e})")
    for variant, stages in (result.variants or {}).items():
        pipe = stages["pipeline"]
        stderr.print(f"{variant:8s} pipeline vs fp32: median abs error {pipe['median_abs']:.1e}, max {pipe['max_abs']:.1e}, "
                     f"argmax changed in {pipe['argmax_changed']:.3%} of pixels")
    payload = result.manifest.payload_bytes()
    print(f"wrote {out} ({', '.join(s.file for s in result.manifest.stages.values())}, psf.json) | "
          f"payload per slice {payload['up']} B up, {payload['down']} B down ({result.manifest.wire_dtype})")
    if triton["out"]:
        write_triton_repo(result.manifest, **triton)
