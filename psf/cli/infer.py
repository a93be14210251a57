"""psf-infer: scans -> masks in the scans' own geometry, with a bundle (numpy + ONNX Runtime; no torch)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.io.scan import ReadOptions
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


@dataclass(frozen=True)
class OutputOptions:
    """What psf-infer writes besides the mask."""

    overlay: bool = False
    dicom_seg: bool = False


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
        summary = run_batch(inputs, segmenter, out, axis, overwrite, quiet, debug, ReadOptions(volume_index), outputs)
    if report:
        from psf.io.atomic import write_text_atomic

        write_text_atomic(report, json.dumps(summary, indent=2) + "\n")
    print(summary_line(summary))
    if summary["failed"]:
        raise typer.Exit(1)


def run_batch(inputs: list[Path], segmenter, out: Path, axis: int, overwrite: bool, quiet: bool, debug: bool,
              read_options: ReadOptions = ReadOptions(), outputs: OutputOptions = OutputOptions()) -> dict:
    """Segment every scan found; isolate failures; return the run's report."""
    from psf.errors import PsfError
    from psf.io import MASK_SUFFIX, find_scans, mask_path, read_source, write_mask
    from psf.io.dicom_seg import write_dicom_seg
    from psf.io.overlay import write_overlay
    from psf.pipeline.scan import Timings, segment_scan
    from psf.progress import progress_bar, stderr

    found = find_scans(inputs)
    files, totals, started = [], Timings(), time.perf_counter()
    io_seconds = 0.0
    with progress_bar(quiet) as bar:
        task = bar.add_task("segmenting", total=len(found), unit="scans")
        for source in found:
            scan_path = source.path
            entry = {"input": str(scan_path)}
            try:
                t0 = time.perf_counter()
                scan = read_source(source, read_options)
                target = mask_path(source, None, out, scan.format)
                entry["output"] = str(target)
                if target.exists() and not overwrite:
                    entry.update(status="skipped", reason=f"{target} exists; pass --overwrite to replace it")
                    stderr.print(f"skipped {scan_path}: {entry['reason']}", highlight=False)
                    continue
                t1 = time.perf_counter()
                slice_axis = axis if scan.pixels.shape[2] > 1 else 2
                mask, timings = segment_scan(scan, segmenter, slice_axis)
                t2 = time.perf_counter()
                write_mask(target, mask, scan)
                stem = target.name.removesuffix(MASK_SUFFIX[scan.format]).removesuffix("_mask")
                if outputs.overlay:
                    picture = target.with_name(f"{stem}_overlay.png")
                    write_overlay(picture, scan.pixels, mask, slice_axis, volume=scan.format != "image2d")
                    entry["overlay"] = str(picture)
                if outputs.dicom_seg and source.kind == "dicom":
                    seg_path = target.with_name(f"{stem}_seg.dcm")
                    write_dicom_seg(seg_path, mask, source.files, segmenter.manifest.labels)
                    entry["dicom_seg"] = str(seg_path)
                io_seconds += (t1 - t0) + (time.perf_counter() - t2)
                totals.add(timings)
                entry.update(status="ok", slices=timings.slices, seconds=round(time.perf_counter() - t0, 3))
            except Exception as exc:  # one bad scan must not end the batch; --debug re-raises
                if debug:
                    raise
                reason = str(exc) if isinstance(exc, PsfError) else f"unexpected {type(exc).__name__}: {exc} (rerun with --debug)"
                entry.update(status="failed", reason=reason)
                stderr.print(f"[red]failed[/red] {scan_path}: {reason.removeprefix(str(scan_path) + ': ')}", highlight=False)
            finally:
                files.append(entry)
                bar.advance(task)
    seconds = time.perf_counter() - started
    return {
        "scans": len(found),
        "ok": sum(f["status"] == "ok" for f in files),
        "failed": sum(f["status"] == "failed" for f in files),
        "skipped": sum(f["status"] == "skipped" for f in files),
        "slices": totals.slices,
        "seconds": round(seconds, 3),
        "breakdown_seconds": {"read_write": round(io_seconds, 3), "preprocess": round(totals.preprocess, 3),
                              "model": round(totals.model, 3), "postprocess": round(totals.postprocess, 3)},
        "backend": segmenter.options.backend,
        "mode": segmenter.options.mode,
        "files": files,
    }


def summary_line(summary: dict) -> str:
    rate = summary["slices"] / summary["seconds"] if summary["seconds"] else 0.0
    model_share = summary["breakdown_seconds"]["model"] / summary["seconds"] if summary["seconds"] else 0.0
    parts = [f"{summary['scans']} scans, {summary['failed']} failed"]
    if summary["skipped"]:
        parts[0] += f", {summary['skipped']} skipped"
    parts += [f"{summary['slices']} slices in {summary['seconds']:.2f} s", f"{rate:.0f} slices/s",
              f"model {model_share:.0%} of the time ({summary['backend']}, {summary['mode']})"]
    return " | ".join(parts)
