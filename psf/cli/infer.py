"""psf-infer: scans -> masks in the scans' own geometry, with a bundle (numpy + ONNX Runtime; no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.io.scan import ReadOptions
from psf.pipeline.batch import BatchOptions, OutputOptions, run_batch, summary_line
from psf.registry import BACKENDS, PRECISIONS, SUFFIX_BACKEND


def infer(
    inputs: Annotated[list[Path], typer.Argument(help="Scan files or folders (searched recursively): NIfTI, PNG, DICOM files and series.")],
    engine: Annotated[Path, typer.Option("--engine", "-e", help="Any file of a bundle (e.g. bundle/map.onnx) or the bundle folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the masks; mirrors the input folders.")] = Path("masks"),
    backend: Annotated[Optional[str], typer.Option(help=f"One of: {', '.join(BACKENDS)} (default: from the engine's suffix).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32, fp16 or int8: which of the bundle's ONNX graphs or engines to run (default: the --engine file's, else fp32 on ONNX Runtime and fp16 on TensorRT).")] = None,
    mode: Annotated[Optional[str], typer.Option(help="local: one fused graph. staged: encoder, map, decoder with latents rounded to the wire dtype. split: map on --server (implied by --server).")] = None,
    server: Annotated[Optional[str], typer.Option(help="Map on this psf-serve/Triton server: grpc://HOST:PORT, grpcs://HOST:PORT or http://HOST:PORT. Only encoded latents are sent.")] = None,
    wire: Annotated[str, typer.Option(help="Latent dtype on the wire with --server: fp16 (57 KB/slice both ways) or fp32.")] = "fp16",
    ca: Annotated[Optional[Path], typer.Option(help="PEM CA certificate to verify the server (turns TLS on).")] = None,
    cert: Annotated[Optional[Path], typer.Option(help="PEM client certificate, for servers that require mutual TLS.")] = None,
    key: Annotated[Optional[Path], typer.Option(help="PEM private key of --cert.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request to the server.")] = 30.0,
    retries: Annotated[int, typer.Option(help="Retries (exponential backoff) when the server is unavailable.")] = 4,
    inflight: Annotated[int, typer.Option(help="Requests in flight at once with --server.")] = 4,
    request_slices: Annotated[int, typer.Option(help="Slices per request with --server.")] = 8,
    model_name: Annotated[Optional[str], typer.Option("--model", help="Server model name (default: psf_map_<map sha256[:12]>_<wire>).")] = None,
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
    remote = dict(server=server, wire=wire, ca=ca, cert=cert, key=key, timeout=timeout, retries=retries,
                  inflight=inflight, request_slices=request_slices, model_name=model_name)
    reports_errors(_infer)(inputs, engine, out, backend, precision, mode, batch_size, threads, axis, volume_index, overwrite,
                           OutputOptions(overlay, dicom_seg), report, quiet, debug, remote, debug=debug)


def _remote_map(manifest, server: str, wire: str, ca, cert, key, timeout, retries, inflight, request_slices, model_name):
    """The split-mode client, connected and checked against this bundle's map net."""
    from dataclasses import replace

    from psf.serve.client import ClientOptions, RemoteMap
    from psf.serve.schema import WireSchema

    schema = WireSchema.for_bundle(manifest, wire)
    if model_name:
        schema = replace(schema, model_name=model_name)
    options = ClientOptions(wire=wire, request_slices=request_slices, inflight=inflight, timeout_s=timeout,
                            retries=retries, ca=ca, cert=cert, key=key)
    return RemoteMap(server, schema, options).connect()


def file_precision(manifest, engine: Path) -> str | None:
    """The precision of the file --engine names: an engine recorded in the manifest, or an ONNX variant."""
    from psf.runtime.trt import engine_precision

    if engine.is_dir():
        return None
    if engine.suffix in (".plan", ".engine"):
        return engine_precision(manifest, engine.name)
    for variant, files in manifest.variants.items():
        if any(f.file == engine.name for f in files.values()):
            return "int8" if variant.startswith("int8") else variant
    return None


def _infer(inputs, engine, out, backend, precision, mode, batch_size, threads, axis, volume_index, overwrite, outputs, report,
           quiet, debug, remote) -> None:
    from psf.errors import UsageError
    from psf.manifest import load_manifest
    from psf.pipeline.segmenter import MODES, Segmenter, SegmenterOptions

    backend = backend or SUFFIX_BACKEND.get(engine.suffix, "ort")
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r} is not available in this build; choose one of {', '.join(BACKENDS)}")
    mode = mode or ("split" if remote["server"] else "local")
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}; choose one of {', '.join(MODES)}")
    if (mode == "split") != bool(remote["server"]):
        raise UsageError("--mode split and --server go together: --server grpc://HOST:PORT maps on that server")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    manifest = load_manifest(engine)
    precision = precision or file_precision(manifest, engine) or ("fp16" if backend == "trt" else "fp32")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    mapper = _remote_map(manifest, **remote) if remote["server"] else None
    if mapper is not None:  # hand the client whole windows of requests, so `--inflight` of them can be in flight
        batch_size = max(batch_size, remote["request_slices"] * remote["inflight"])
    options = SegmenterOptions(backend=backend, mode=mode, batch_size=batch_size, threads=threads, precision=precision,
                               remote=mapper)
    try:
        with Segmenter(manifest, options) as segmenter:
            batch = BatchOptions(out=out, axis=axis, overwrite=overwrite, quiet=quiet, debug=debug,
                                 read=ReadOptions(volume_index=volume_index), outputs=outputs)
            summary = run_batch(inputs, segmenter, batch)
    finally:
        if mapper is not None:
            mapper.close()
    if mapper is not None:
        summary["wire"] = {"server": remote["server"], "dtype": remote["wire"], **vars(mapper.stats)}
    if report:
        from psf.io.atomic import write_text_atomic

        write_text_atomic(report, json.dumps(summary, indent=2) + "\n")
    print(summary_line(summary))
    if summary["failed"]:
        raise typer.Exit(1)
