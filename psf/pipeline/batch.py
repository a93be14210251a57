"""A batch of scans through the whole data path, each isolated: read -> segment -> write, with a report.

What psf-infer runs, and what psf-bench --scan times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from psf.io.scan import ReadOptions


@dataclass(frozen=True)
class OutputOptions:
    """What psf-infer writes besides the mask."""

    overlay: bool = False
    dicom_seg: bool = False


@dataclass(frozen=True)
class BatchOptions:
    """out: the mask folder; axis: the slicing axis for volumes; debug: re-raise instead of isolating."""

    out: Path
    axis: int = 2
    overwrite: bool = False
    quiet: bool = False
    debug: bool = False
    read: ReadOptions = ReadOptions()
    outputs: OutputOptions = OutputOptions()


def run_batch(inputs: list[Path], segmenter, options: BatchOptions) -> dict:
    """Segment every scan found; isolate failures; return the run's report (per file, timings, failures).

    Mask paths are planned for all inputs before anything is written (inputs sharing a stem get distinct masks;
    psf.io.plan_mask_paths). A scan counts as failed only when an output it was asked for is missing: a DICOM-SEG
    or overlay that could not be written fails the scan, and the report says which of its outputs do exist."""
    from psf.io import find_scans, plan_mask_paths
    from psf.pipeline.scan import Timings
    from psf.progress import progress_bar, stderr

    channels = len(getattr(segmenter.manifest, "channels", None) or [None])
    found = find_scans(inputs, channels=channels)
    targets, notes = plan_mask_paths(found, options.out)
    for note in notes:
        stderr.print(f"note: {note}", highlight=False)
    files, totals, started = [], Timings(), time.perf_counter()
    io_seconds = [0.0]
    with progress_bar(options.quiet) as bar:
        task = bar.add_task("segmenting", total=len(found), unit="scans")
        for source, target in zip(found, targets):
            entry = {"input": str(source.path), "output": str(target)}
            try:
                _one_scan(source, target, segmenter, options, channels, entry, totals, io_seconds)
            except Exception as exc:  # one bad scan must not end the batch; --debug re-raises
                if options.debug:
                    raise
                _fail(entry, exc)
            finally:
                if entry.get("status") == "failed":
                    stderr.print(f"[red]failed[/red] {source.path}: {entry['reason'].removeprefix(str(source.path) + ': ')}",
                                 highlight=False)
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
        "breakdown_seconds": {"read_write": round(io_seconds[0], 3), "preprocess": round(totals.preprocess, 3),
                              "model": round(totals.model, 3), "postprocess": round(totals.postprocess, 3)},
        "backend": segmenter.options.backend,
        "mode": segmenter.options.mode,
        "files": files,
    }


def _fail(entry: dict, exc: BaseException) -> None:
    from psf.errors import PsfError

    reason = str(exc) if isinstance(exc, PsfError) else f"unexpected {type(exc).__name__}: {exc} (rerun with --debug)"
    entry.update(status="failed", reason=reason)


def _one_scan(source, target: Path, segmenter, options: BatchOptions, channels: int, entry: dict, totals, io_seconds) -> None:
    """Read, segment and write one source; fills `entry` (status ok / skipped / failed and the outputs written)."""
    from psf.errors import ScanReadError
    from psf.io import MASK_SUFFIX, read_source, write_mask
    from psf.pipeline.scan import segment_scan
    from psf.progress import stderr

    if channels > 1 and source.kind != "case":
        raise ScanReadError(source.path, f"the model takes {channels} channels per case ({', '.join(segmenter.manifest.channels)}); "
                                         "name the files CASE_0000.EXT, CASE_0001.EXT, ... (nnU-Net naming)")
    if target.exists() and not options.overwrite:
        entry.update(status="skipped", reason=f"{target} exists; pass --overwrite to replace it")
        stderr.print(f"skipped {source.path}: {entry['reason']}", highlight=False)
        return
    t0 = time.perf_counter()
    scan = read_source(source, options.read)
    for warning in scan.warnings:
        stderr.print(f"[yellow]warning[/yellow] {source.path}: {warning}", highlight=False)
    if scan.warnings:
        entry["warnings"] = list(scan.warnings)
    spatial = scan.pixels[0] if scan.pixels.ndim == 4 else scan.pixels  # multi-channel: (C, X, Y, Z)
    t1 = time.perf_counter()
    slice_axis = options.axis if spatial.shape[2] > 1 else 2
    mask, timings = segment_scan(scan, segmenter, slice_axis)
    t2 = time.perf_counter()
    write_mask(target, mask, scan)
    entry["outputs"] = {"mask": str(target)}
    stem = target.name.removesuffix(MASK_SUFFIX[scan.format]).removesuffix("_mask")
    labels = list(segmenter.manifest.labels)
    missing = []
    if options.outputs.overlay:
        picture = target.with_name(f"{stem}_overlay.png")
        _extra_output(entry, "overlay", picture, missing,
                      lambda: _write_overlay(picture, spatial, mask, slice_axis, scan.format != "image2d", labels))
    if options.outputs.dicom_seg and source.kind == "dicom":
        from psf.io.dicom_seg import write_dicom_seg

        seg_path = target.with_name(f"{stem}_seg.dcm")
        files = scan.source_files or source.files
        _extra_output(entry, "dicom_seg", seg_path, missing, lambda: write_dicom_seg(seg_path, mask, files, labels))
    io_seconds[0] += (t1 - t0) + (time.perf_counter() - t2)
    totals.add(timings)
    entry.update(slices=timings.slices, seconds=round(time.perf_counter() - t0, 3))
    if missing:
        entry.update(status="failed", reason=f"{'; '.join(missing)} (the mask {target} was written)")
    else:
        entry["status"] = "ok"


def _write_overlay(path, pixels, mask, axis, volume, labels):
    from psf.io.overlay import write_overlay

    return write_overlay(path, pixels, mask, axis, volume=volume, labels=labels)


def _extra_output(entry: dict, name: str, path: Path, missing: list[str], write) -> None:
    """Write one optional output; record it in entry["outputs"] when the file exists, else why it is missing."""
    from psf.errors import PsfError

    try:
        write()
    except PsfError as exc:
        missing.append(f"{name} not written: {exc}")
        return
    if not path.is_file():
        missing.append(f"{name} not written: {path} is missing after writing")
        return
    entry["outputs"][name] = str(path)
    entry[name] = str(path)  # the report's older keys


def summary_line(summary: dict) -> str:
    rate = summary["slices"] / summary["seconds"] if summary["seconds"] else 0.0
    model_share = summary["breakdown_seconds"]["model"] / summary["seconds"] if summary["seconds"] else 0.0
    parts = [f"{summary['scans']} scans, {summary['failed']} failed"]
    if summary["skipped"]:
        parts[0] += f", {summary['skipped']} skipped"
    parts += [f"{summary['slices']} slices in {summary['seconds']:.2f} s", f"{rate:.0f} slices/s",
              f"model {model_share:.0%} of the time ({summary['backend']}, {summary['mode']})"]
    wire = summary.get("wire")
    if wire:
        per_slice = (wire["bytes_up"] + wire["bytes_down"]) / max(1, wire["slices"])
        parts.append(f"sent {wire['bytes_up'] / 1e6:.1f} MB, received {wire['bytes_down'] / 1e6:.1f} MB "
                     f"({per_slice / 1024:.1f} KiB/slice, {wire['requests']} requests, {wire['retries']} retries)")
    return " | ".join(parts)
