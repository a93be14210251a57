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
    """Segment every scan found; isolate failures; return the run's report (per file, timings, failures)."""
    from psf.errors import PsfError
    from psf.io import MASK_SUFFIX, find_scans, mask_path, read_source, write_mask
    from psf.io.dicom_seg import write_dicom_seg
    from psf.io.overlay import write_overlay
    from psf.pipeline.scan import Timings, segment_scan
    from psf.progress import progress_bar, stderr

    out, outputs = options.out, options.outputs
    found = find_scans(inputs)
    files, totals, started = [], Timings(), time.perf_counter()
    io_seconds = 0.0
    with progress_bar(options.quiet) as bar:
        task = bar.add_task("segmenting", total=len(found), unit="scans")
        for source in found:
            scan_path = source.path
            entry = {"input": str(scan_path)}
            try:
                t0 = time.perf_counter()
                scan = read_source(source, options.read)
                target = mask_path(source, None, out, scan.format)
                entry["output"] = str(target)
                if target.exists() and not options.overwrite:
                    entry.update(status="skipped", reason=f"{target} exists; pass --overwrite to replace it")
                    stderr.print(f"skipped {scan_path}: {entry['reason']}", highlight=False)
                    continue
                t1 = time.perf_counter()
                slice_axis = options.axis if scan.pixels.shape[2] > 1 else 2
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
                if options.debug:
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
    wire = summary.get("wire")
    if wire:
        per_slice = (wire["bytes_up"] + wire["bytes_down"]) / max(1, wire["slices"])
        parts.append(f"sent {wire['bytes_up'] / 1e6:.1f} MB, received {wire['bytes_down'] / 1e6:.1f} MB "
                     f"({per_slice / 1024:.1f} KiB/slice, {wire['requests']} requests, {wire['retries']} retries)")
    return " | ".join(parts)
