"""psf-bench: latency per stage and backend (p50/p95), payload per slice, FLOPs, peak memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors


def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or any file in it.")],
    backends: Annotated[str, typer.Option(help="Comma-separated: ort, ort-cuda, torch (torch needs the checkpoint).")] = "ort,torch",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,16",
    threads: Annotated[int, typer.Option(help="CPU threads for every backend.")] = 2,
    iters: Annotated[int, typer.Option(help="Timed calls per stage (capped at ~20 s each).")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed calls first.")] = 5,
    checkpoint: Annotated[Optional[Path], typer.Option(help="model.pt for the torch backend (default: the one the bundle records).")] = None,
    peak_gflops: Annotated[float, typer.Option(help="The CPU's fp32 peak, for the FLOP floor.")] = 190.0,
    scan: Annotated[Optional[Path], typer.Option(help="Also run psf-infer's whole path on this scan and break its time down.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON.")] = None,
    markdown_out: Annotated[Optional[Path], typer.Option("--markdown", help="Write the Markdown table to a file.")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Measure the bundle: ONNX Runtime and torch eager side by side, batch 1 and 16."""
    reports_errors(_bench)(bundle, backends, batch_sizes, threads, iters, warmup, checkpoint, peak_gflops, scan, json_out,
                           markdown_out, quiet, debug=debug)


def _bench(bundle, backends, batch_sizes, threads, iters, warmup, checkpoint, peak_gflops, scan, json_out, markdown_out,
           quiet):
    from psf.bench.run import BenchOptions, markdown, run_bench
    from psf.errors import UsageError
    from psf.io.atomic import write_text_atomic
    from psf.manifest import load_manifest
    from psf.progress import stderr

    try:
        sizes = tuple(int(b) for b in batch_sizes.split(","))
    except ValueError:
        raise UsageError(f"--batch-sizes {batch_sizes!r}: expected integers like 1,16") from None
    chosen = tuple(b.strip() for b in backends.split(",") if b.strip())
    unknown = [b for b in chosen if b not in ("ort", "ort-cuda", "torch")]
    if unknown or any(s < 1 for s in sizes):
        raise UsageError(f"--backends {backends!r} / --batch-sizes {batch_sizes!r}: use ort, ort-cuda, torch and sizes >= 1")
    opts = BenchOptions(backends=chosen, batch_sizes=sizes, threads=threads, warmup=warmup, iters=iters,
                        checkpoint=checkpoint, peak_gflops=peak_gflops, scan=scan)

    def show(row):
        if not quiet:
            stderr.print(f"{row['backend']:6s} batch {row['batch']:3d} {row['stage']:10s} p50 {row['p50']:8.2f} ms  "
                         f"p95 {row['p95']:8.2f} ms", highlight=False)

    report = run_bench(load_manifest(bundle), opts, on_result=show)
    table = markdown(report)
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=2) + "\n")
    if markdown_out:
        write_text_atomic(markdown_out, table)
    print(table, end="")
