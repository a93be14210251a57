"""psf-bench's job: latency per stage, backend and batch size; payload; FLOPs and the FLOP floor; memory."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from psf import __version__
from psf.bench.jetson import PowerSampler
from psf.bench.stages import STAGE_ORDER, ort_calls, sample_inputs, torch_calls, trt_calls
from psf.bench.timing import peak_rss_mib, time_calls
from psf.manifest import Manifest
from psf.registry import GRAPHS

@dataclass(frozen=True)
class BenchOptions:
    backends: tuple[str, ...] = ("ort", "torch")
    batch_sizes: tuple[int, ...] = (1, 16)
    threads: int | None = 2
    warmup: int = 5
    iters: int = 50
    checkpoint: Path | None = None
    peak_gflops: float | None = None  # None: measured in this run (psf.bench.peak); a number overrides the probe
    scan: Path | None = None  # also time psf-infer's whole path on this scan
    precision: str = "fp32"  # ONNX variant / engines for ort and trt; torch runs the checkpoint in fp32


def stage_flops(manifest: Manifest) -> dict[str, int] | None:
    """FLOPs per stage at batch 1, or None when the `onnx` package is absent."""
    try:
        from psf.bench.flops import count_flops
        return {s: count_flops(manifest.path_of(s)) for s in GRAPHS}
    except ImportError:
        return None


def run_bench(manifest: Manifest, opts: BenchOptions, on_result=None) -> dict:
    results = []
    for backend in opts.backends:
        for batch in opts.batch_sizes:
            inputs = sample_inputs(manifest, batch)
            opened = []  # TensorRT runners: deactivated (GPU memory freed) once their stages are timed
            if backend == "torch":
                calls = torch_calls(_checkpoint(manifest, opts), inputs, opts.threads)
            elif backend in ("trt", "trt-nograph"):  # with and without CUDA graph replay
                calls = trt_calls(manifest, inputs, opts.precision, graphs=backend == "trt", opened=opened)
            else:
                calls = ort_calls(manifest, inputs, opts.threads, backend, opts.precision)
            for stage in STAGE_ORDER:
                precision = "fp32" if backend == "torch" else opts.precision
                with PowerSampler() as power:  # Jetson only: power and GPU clock while the stage runs
                    timing = time_calls(calls[stage], opts.warmup, opts.iters)
                row = {"backend": backend, "precision": precision, "batch": batch, "stage": stage, **timing}
                if (sampled := power.result()) is not None:
                    row["power"] = sampled
                row["slices_per_s"] = round(batch * 1000 / row["p50"], 1)
                results.append(row)
                if on_result:
                    on_result(row)
            for runner in opened:
                runner.deactivate()
    flops = stage_flops(manifest)
    breakdown = scan_breakdown(manifest, opts.scan, opts.threads) if opts.scan else None
    report = {
        "psf_version": __version__,
        "host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                 "cpus": os.cpu_count(), "threads": opts.threads},
        "results": results,
        "payload_bytes_per_slice": {"float16": manifest.payload_bytes("float16"), "float32": manifest.payload_bytes("float32"),
                                    "wire_dtype": manifest.wire_dtype},
        "image_bytes_8bit": manifest.image_size**2,
        "flops": flops,
        "peak_rss_mib": peak_rss_mib(),
        "scan_breakdown": breakdown,
    }
    if flops:
        report["flop_floor"] = flop_floor(flops["pipeline"], results, opts)
    return report


def flop_floor(pipeline_flops: int, results: list[dict], opts: BenchOptions) -> dict:
    """The pipeline's time at this host's measured GEMM peak, and how far ONNX Runtime's batch-1 pipeline is
    from it. int8 graphs are held against the int8 GEMM peak, fp32/fp16 graphs against the fp32 one."""
    integer = opts.precision == "int8"
    if opts.peak_gflops is not None:
        peak, source = opts.peak_gflops, "--peak-gflops"
    else:
        from psf.bench.peak import gemm_peak

        peak, source = gemm_peak(opts.threads, integer=integer), f"measured: ONNX Runtime {'int8' if integer else 'fp32'} GEMM"
    floor_ms = pipeline_flops / (peak * 1e9) * 1000
    floor = {"peak_gflops": peak, "peak_source": source, "pipeline_ms": round(floor_ms, 3)}
    best = [r for r in results if r["stage"] == "pipeline" and r["batch"] == 1 and r["backend"].startswith("ort")
            and r["precision"] == opts.precision]
    if best:
        floor["pipeline_batch1_vs_floor"] = round(best[0]["p50"] / floor_ms, 2)
    return floor


def scan_breakdown(manifest: Manifest, scan: Path, threads: int | None) -> dict:
    """psf-infer's path on one scan (ONNX Runtime, fused pipeline, batch 16), timed on a second pass
    after a warm-up: seconds per part, and the share that is not the model (read, pre/postprocess, write)."""
    import tempfile

    from psf.pipeline.batch import BatchOptions, run_batch
    from psf.pipeline.segmenter import Segmenter, SegmenterOptions

    with tempfile.TemporaryDirectory() as tmp, Segmenter(manifest, SegmenterOptions(threads=threads)) as segmenter:
        options = BatchOptions(out=Path(tmp), quiet=True, overwrite=True)
        run_batch([scan], segmenter, options)  # warm-up: first imports of the readers, ONNX Runtime's first runs
        run = run_batch([scan], segmenter, options)
    if run["failed"]:
        from psf.errors import UsageError

        raise UsageError(f"--scan {scan}: {run['files'][0]['reason']}")
    parts = run["breakdown_seconds"]
    return {"slices": run["slices"], "seconds": run["seconds"], "parts": parts,
            "not_model_share": round(1 - parts["model"] / run["seconds"], 3)}


def _checkpoint(manifest: Manifest, opts: BenchOptions) -> Path:
    from psf.errors import UsageError

    candidate = opts.checkpoint or Path(manifest.source.get("checkpoint", ""))
    if not candidate or not Path(candidate).is_file():
        raise UsageError(f"the torch backend needs the bundle's checkpoint ({candidate or 'unknown'} not found); "
                         "pass --checkpoint model.pt or --backends ort")
    return Path(candidate)


def markdown(report: dict) -> str:
    """The report as Markdown: one latency table, then payload, FLOPs and memory."""
    lines = ["| backend | precision | batch | stage | p50 ms | p99 ms | slices/s | power W |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["results"]:
        power = f"{r['power']['power_w']:.1f}" if r.get("power") else "-"
        lines.append(f"| {r['backend']} | {r.get('precision', 'fp32')} | {r['batch']} | {r['stage']} | {r['p50']:.2f} | "
                     f"{r.get('p99', r['p95']):.2f} | {r['slices_per_s']:.0f} | {power} |")
    pay = report["payload_bytes_per_slice"]
    lines += ["", f"Payload per slice (up / down): float16 {pay['float16']['up']} / {pay['float16']['down']} B, "
              f"float32 {pay['float32']['up']} / {pay['float32']['down']} B; the 8-bit image is {report['image_bytes_8bit']} B."]
    if report.get("flops"):
        flops = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in report["flops"].items())
        lines.append(f"GFLOPs per slice: {flops}.")
        floor = report["flop_floor"]
        ratio = floor.get("pipeline_batch1_vs_floor")
        lines.append(f"FLOP floor at {floor['peak_gflops']:.0f} G(FL)OP/s ({floor.get('peak_source', 'given')}): "
                     f"{floor['pipeline_ms']:.2f} ms per slice"
                     + (f"; ONNX Runtime batch-1 pipeline is {ratio:.2f}x the floor." if ratio else "."))
    lines.append(f"Peak RSS: {report['peak_rss_mib']} MiB.")
    if report.get("scan_breakdown"):
        b = report["scan_breakdown"]
        parts = ", ".join(f"{k} {v:.3f} s" for k, v in b["parts"].items())
        lines.append(f"psf-infer on the scan: {b['slices']} slices in {b['seconds']:.2f} s ({parts}); "
                     f"{b['not_model_share']:.0%} of the time is not the model.")
    return "\n".join(lines) + "\n"
