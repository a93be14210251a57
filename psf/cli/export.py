"""psf-export: model.pt -> ONNX bundle with manifest, checked and compared with torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, reports_errors


def export(
    checkpoint: Annotated[Path, typer.Argument(help="model.pt from psf-train.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Bundle folder (default: bundle/ beside the checkpoint).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Export encoder, map, decoder and the fused pipeline to ONNX, with psf.json and a parity check."""
    reports_errors(_export)(checkpoint, out, debug=debug)


def _export(checkpoint: Path, out: Path | None) -> None:
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
