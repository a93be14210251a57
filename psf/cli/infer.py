"""psf-infer: scans -> masks in the scans' own geometry, with a bundle (numpy + ONNX Runtime; no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.io.scan import ReadOptions
from psf.pipeline.batch import BatchOptions, OutputOptions, run_batch, summary_line
from psf.registry import BACKENDS, SUFFIX_BACKEND


def infer(
    inputs: Annotated[list[Path], typer.Argument(help="Scan files or folders (searched recursively): NIfTI, PNG, DICOM files and series.")],
    engine: Annotated[Path, typer.Option("--engine", "-e", help="Any file of a bundle (e.g. bundle/map.onnx) or the bundle folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the masks; mirrors the input folders.")] = Path("masks"),
    backend: Annotated[Optional[str], typer.Option(help=f"One of: {', '.join(BACKENDS)} (default: from the engine's suffix).")] = None,
    mode: Annotated[str, typer.Option(help="local: one fused graph. staged: encoder, map, decoder with latents rounded to the wire dtype.")] = "local",
    batch_size: Annotated[int, typer.Option(help="Slices per model call.")] = 16,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op CPU threads (default: all cores).")] = None,
    axis: Annotated[int, typer.Option(help="Voxel axis to slice volumes along (0, 1 or 2).")] = 2,
    volume_index: Annotated[Optional[int], typer.Option(help="For 4D NIfTI: which volume to segment.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace masks that already exist.")] = False,
    overlay: Annotated[bool, typer.Option(help="Also write <stem>_overlay.png: slices with the labels in colour.")] = False,
    dicom_seg: Annotated[bool, typer.Option(help="For DICOM series, also write <stem>_seg.dcm (DICOM-SEG) referencing the series.")] = False,
    report: Annotated[Optional[Path], typer.Option(help="Write a JSON report of the run (per file, timings, failures).")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Segment scans with a Privacy-SF bundle; a bad file is reported and the rest still run."""
    reports_errors(_infer)(inputs, engine, out, backend, mode, batch_size, threads, axis, volume_index, overwrite,
                           OutputOptions(overlay, dicom_seg), report, quiet, debug, debug=debug)


def _infer(inputs, engine, out, backend, mode, batch_size, threads, axis, volume_index, overwrite, outputs, report,
           quiet, debug) -> None:
    from psf.errors import UsageError
    from psf.manifest import load_manifest
    from psf.pipeline.segmenter import MODES, Segmenter, SegmenterOptions

    backend = backend or SUFFIX_BACKEND.get(engine.suffix, "ort")
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r} is not available in this build; choose one of {', '.join(BACKENDS)}")
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}; choose one of {', '.join(MODES)}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    manifest = load_manifest(engine)
    options = SegmenterOptions(backend=backend, mode=mode, batch_size=batch_size, threads=threads)
    with Segmenter(manifest, options) as segmenter:
        batch = BatchOptions(out=out, axis=axis, overwrite=overwrite, quiet=quiet, debug=debug,
                             read=ReadOptions(volume_index=volume_index), outputs=outputs)
        summary = run_batch(inputs, segmenter, batch)
    if report:
        from psf.io.atomic import write_text_atomic

        write_text_atomic(report, json.dumps(summary, indent=2) + "\n")
    print(summary_line(summary))
    if summary["failed"]:
        raise typer.Exit(1)
