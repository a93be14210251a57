"""psf-bench: latency per stage and backend (p50/p95), payload per slice, FLOPs, peak memory."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    peak_gflops: Annotated[Optional[float], typer.Option(help="The host's peak (GFLOP/s; GOP/s for int8) for the FLOP floor (default: measured in this run with a GEMM probe).")] = None,
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
        reports_errors(_load)(bundle, server, LoadArgs(clients, slices, request_slices, wire, end_to_end), threads,
                              json_out, markdown_out, debug=debug)
        return
    reports_errors(_bench)(bundle, BenchArgs(backends, precision, batch_sizes, threads, iters, warmup, checkpoint,
                                             peak_gflops, scan), json_out, markdown_out, quiet, debug=debug)


@dataclass(frozen=True)
class LoadArgs:
    """--load's flags as typed."""

    clients: int
    slices: int
    request_slices: int
    wire: str
    end_to_end: bool

    def options(self):
        from psf.bench.load import LoadOptions
        from psf.errors import UsageError
        from psf.serve.schema import wire_name

        if self.clients < 1 or self.slices < 1 or self.request_slices < 1:
            raise UsageError(f"--clients, --slices and --request-slices must be >= 1, got {self.clients}, {self.slices}, "
                             f"{self.request_slices}")
        return LoadOptions(clients=self.clients, slices=self.slices, request_slices=self.request_slices,
                           wire=wire_name(self.wire))


@dataclass(frozen=True)
class BenchArgs:
    """The latency benchmark's flags as typed; `options()` checks them and builds psf.bench.run.BenchOptions."""

    backends: str
    precision: str
    batch_sizes: str
    threads: int
    iters: int
    warmup: int
    checkpoint: Path | None
    peak_gflops: float | None
    scan: Path | None

    def options(self):
        from psf.bench.run import BenchOptions
        from psf.errors import UsageError
        from psf.registry import PRECISIONS

        try:
            sizes = tuple(int(b) for b in self.batch_sizes.split(","))
        except ValueError:
            raise UsageError(f"--batch-sizes {self.batch_sizes!r}: expected integers like 1,16") from None
        chosen = tuple(b.strip() for b in self.backends.split(",") if b.strip())
        unknown = [b for b in chosen if b not in BENCH_BACKENDS]
        if unknown or any(s < 1 for s in sizes):
            raise UsageError(f"--backends {self.backends!r} / --batch-sizes {self.batch_sizes!r}: "
                             f"use {', '.join(BENCH_BACKENDS)} and sizes >= 1")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.peak_gflops is not None and self.peak_gflops <= 0:
            raise UsageError(f"--peak-gflops {self.peak_gflops}: must be > 0 (or leave it out to measure)")
        return BenchOptions(backends=chosen, batch_sizes=sizes, threads=self.threads, warmup=self.warmup, iters=self.iters,
                            checkpoint=self.checkpoint, peak_gflops=self.peak_gflops, scan=self.scan,
                            precision=self.precision)


def _load(bundle: Path, server: str | None, args: LoadArgs, threads: int, json_out, markdown_out):
    from psf.bench.load import load_markdown, run_load_bench
    from psf.manifest import load_manifest

    options = args.options()
    manifest = load_manifest(bundle)
    report = run_load_bench(manifest.root, manifest, server, options, server_threads=threads, end_to_end=args.end_to_end)
    _publish(report, load_markdown(report), json_out, markdown_out)


def _bench(bundle: Path, args: BenchArgs, json_out: Path | None, markdown_out: Path | None, quiet: bool):
    from psf.bench.run import markdown, run_bench
    from psf.manifest import load_manifest
    from psf.progress import stderr

    opts = args.options()

    def show(row):
        if not quiet:
            stderr.print(f"{row['backend']:6s} {row['precision']} batch {row['batch']:3d} {row['stage']:10s} "
                         f"p50 {row['p50']:8.2f} ms  p99 {row['p99']:8.2f} ms", highlight=False)

    report = run_bench(load_manifest(bundle), opts, on_result=show)
    _publish(report, markdown(report), json_out, markdown_out)


def _publish(report: dict, table: str, json_out: Path | None, markdown_out: Path | None) -> None:
    """The table on stdout; the report as JSON and the table as Markdown where asked."""
    from psf.io.atomic import write_text_atomic

    if json_out:
        from psf.bench.provenance import write_run_json

        write_text_atomic(json_out, json.dumps(report, indent=2) + "\n")
        write_run_json(json_out.parent)  # commit, command, host, versions beside the figures
    if markdown_out:
        write_text_atomic(markdown_out, table)
    print(table, end="")
