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
    debug: DebugOpt = False,
) -> None:
    """Export encoder, map, decoder and the fused pipeline to ONNX, with psf.json and a parity check."""
    triton = dict(out=triton_repo, kind=triton_kind, instances=triton_instances, max_batch=triton_max_batch, overwrite=overwrite)
    reports_errors(_export)(checkpoint, out, triton, debug=debug)


def write_triton_repo(manifest, out: Path, kind: str = "gpu", instances: int = 1, max_batch: int = 64,
                      overwrite: bool = False) -> None:
    """Shared by psf-export --triton-repo and psf-serve --write-repo."""
    from psf.serve.repository import RepositoryOptions, write_repository

    options = RepositoryOptions(max_batch=max_batch, instances=instances, kind=f"KIND_{kind.upper()}", overwrite=overwrite)
    for folder in write_repository(manifest, out, options):
        print(f"wrote Triton model {folder}")


def _export(checkpoint: Path, out: Path | None, triton: dict) -> None:
    from psf.export.onnx import export_bundle, tolerance
    from psf.progress import stderr

    out = out or checkpoint.parent / "bundle"
    with stderr.status(f"exporting {checkpoint} to {out}"):
        result = export_bundle(checkpoint, out)
    for stage, err in result.parity.items():
        stderr.print(f"parity {stage:9s} max abs error vs torch {err:.2e} (tolerance {tolerance(stage):.0e})")
    payload = result.manifest.payload_bytes()
    print(f"wrote {out} ({', '.join(s.file for s in result.manifest.stages.values())}, psf.json) | "
          f"payload per slice {payload['up']} B up, {payload['down']} B down ({result.manifest.wire_dtype})")
    if triton["out"]:
        write_triton_repo(result.manifest, **triton)
