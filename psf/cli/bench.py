"""psf-bench: latency per stage and backend (p50/p95), payload per slice, FLOPs, peak memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors

BENCH_BACKENDS = ("ort", "ort-cuda", "trt", "trt-nograph", "torch")


def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or any file in it.")],
    backends: Annotated[str, typer.Option(help="Comma-separated: ort, ort-cuda, trt (CUDA graphs), trt-nograph, torch (needs the checkpoint).")] = "ort,torch",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8: the ONNX variant (ort) or engines (trt) to time.")] = "fp32",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,16",
    threads: Annotated[int, typer.Option(help="CPU threads for every backend.")] = 2,
    iters: Annotated[int, typer.Option(help="Timed calls per stage (capped at ~20 s each).")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed calls first.")] = 5,
    checkpoint: Annotated[Optional[Path], typer.Option(help="model.pt for the torch backend (default: the one the bundle records).")] = None,
    peak_gflops: Annotated[float, typer.Option(help="The CPU's fp32 peak, for the FLOP floor.")] = 190.0,
    scan: Annotated[Optional[Path], typer.Option(help="Also run psf-infer's whole path on this scan and break its time down.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON.")] = None,
    markdown_out: Annotated[Optional[Path], typer.Option("--markdown", help="Write the Markdown table to a file.")] = None,
    load: Annotated[bool, typer.Option(help="Load-test a map server instead: concurrent clients, p50/p99, throughput, lost/wrong answers.")] = False,
    server: Annotated[Optional[str], typer.Option(help="Load-test this server (implies --load; default: start loopback servers, dynamic batching on and off).")] = None,
    clients: Annotated[int, typer.Option(help="With --load: concurrent clients.")] = 8,
    slices: Annotated[int, typer.Option(help="With --load: slices each client sends.")] = 200,
    request_slices: Annotated[int, typer.Option(help="With --load: slices per request.")] = 1,
    wire: Annotated[str, typer.Option(help="With --load: fp16 or fp32 latents on the wire.")] = "fp16",
    end_to_end: Annotated[bool, typer.Option(help="With --load: also time encode -> map -> decode, split vs local.")] = True,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Measure the bundle: ONNX Runtime and torch eager side by side, batch 1 and 16; or, with --load, a map server."""
    if load or server:
        reports_errors(_load)(bundle, server, clients, slices, request_slices, wire, end_to_end, threads, json_out,
                              markdown_out, debug=debug)
        return
    reports_errors(_bench)(bundle, backends, precision, batch_sizes, threads, iters, warmup, checkpoint, peak_gflops, scan,
                           json_out, markdown_out, quiet, debug=debug)


def _load(bundle, server, clients, slices, request_slices, wire, end_to_end, threads, json_out, markdown_out):
    from psf.bench.load import LoadOptions, load_markdown, run_load_bench
    from psf.errors import UsageError
    from psf.manifest import load_manifest
    from psf.serve.schema import wire_name

    if clients < 1 or slices < 1 or request_slices < 1:
        raise UsageError(f"--clients, --slices and --request-slices must be >= 1, got {clients}, {slices}, {request_slices}")
    manifest = load_manifest(bundle)
    options = LoadOptions(clients=clients, slices=slices, request_slices=request_slices, wire=wire_name(wire))
    report = run_load_bench(manifest.root, manifest, server, options, server_threads=threads, end_to_end=end_to_end)
    table = load_markdown(report)
    _publish(report, table, json_out, markdown_out)


def _bench(bundle, backends, precision, batch_sizes, threads, iters, warmup, checkpoint, peak_gflops, scan, json_out, markdown_out,
           quiet):
    from psf.bench.run import BenchOptions, markdown, run_bench
    from psf.errors import UsageError
    from psf.manifest import load_manifest
    from psf.progress import stderr
    from psf.registry import PRECISIONS

    try:
        sizes = tuple(int(b) for b in batch_sizes.split(","))
    except ValueError:
        raise UsageError(f"--batch-sizes {batch_sizes!r}: expected integers like 1,16") from None
    chosen = tuple(b.strip() for b in backends.split(",") if b.strip())
    unknown = [b for b in chosen if b not in BENCH_BACKENDS]
    if unknown or any(s < 1 for s in sizes):
        raise UsageError(f"--backends {backends!r} / --batch-sizes {batch_sizes!r}: use {', '.join(BENCH_BACKENDS)} and sizes >= 1")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    opts = BenchOptions(backends=chosen, batch_sizes=sizes, threads=threads, warmup=warmup, iters=iters,
                        checkpoint=checkpoint, peak_gflops=peak_gflops, scan=scan, precision=precision)

    def show(row):
        if not quiet:
            stderr.print(f"{row['backend']:6s} {row['precision']} batch {row['batch']:3d} {row['stage']:10s} "
                         f"p50 {row['p50']:8.2f} ms  p99 {row['p99']:8.2f} ms", highlight=False)

    report = run_bench(load_manifest(bundle), opts, on_result=show)
    table = markdown(report)
    _publish(report, table, json_out, markdown_out)


def _publish(report: dict, table: str, json_out: Path | None, markdown_out: Path | None) -> None:
    """The table on stdout; the report as JSON and the table as Markdown where asked."""
    from psf.io.atomic import write_text_atomic

    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=2) + "\n")
    if markdown_out:
        write_text_atomic(markdown_out, table)
    print(table, end="")
