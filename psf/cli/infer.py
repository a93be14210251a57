"""psf-infer: scans -> masks in the scans' own geometry, with a bundle (numpy + ONNX Runtime; no torch)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.io.scan import ReadOptions
from psf.pipeline.batch import BatchOptions, OutputOptions, run_batch, summary_line
from psf.registry import BACKENDS, PRECISIONS, SUFFIX_BACKEND


def infer(
    inputs: Annotated[list[Path], typer.Argument(help="Scan files or folders (searched recursively): NIfTI, PNG, DICOM files and series. A model with several input channels reads each case from CASE_0000.EXT, CASE_0001.EXT, ... (nnU-Net naming). Inputs sharing a stem (vol.mha, vol.nrrd) get vol_mha_mask.nii.gz, vol_nrrd_mask.nii.gz.")],
    engine: Annotated[Path, typer.Option("--engine", "-e", help="Any file of a bundle (e.g. bundle/map.onnx) or the bundle folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the masks; mirrors the input folders.")] = Path("masks"),
    backend: Annotated[Optional[str], typer.Option(help=f"One of: {', '.join(BACKENDS)} (default: from the engine's suffix).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32, fp16 or int8: which of the bundle's ONNX graphs or engines to run (default: the --engine file's, else fp32 on ONNX Runtime and fp16 on TensorRT).")] = None,
    mode: Annotated[Optional[str], typer.Option(help="local: one fused graph. staged: encoder, map, decoder with latents rounded to the wire dtype. split: map on --server (implied by --server).")] = None,
    server: Annotated[Optional[str], typer.Option(help="Map on this psf-serve/Triton server: grpc://HOST:PORT, grpcs://HOST:PORT, or http://HOST:PORT (psf-serve answers inference over HTTP only with --http-infer). Only encoded latents are sent.")] = None,
    wire: Annotated[str, typer.Option(help="Latent dtype on the wire with --server: fp16 (57 KB/slice both ways) or fp32.")] = "fp16",
    ca: Annotated[Optional[Path], typer.Option(help="PEM CA certificate to verify the server (turns TLS on).")] = None,
    cert: Annotated[Optional[Path], typer.Option(help="PEM client certificate, for servers that require mutual TLS.")] = None,
    key: Annotated[Optional[Path], typer.Option(help="PEM private key of --cert.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request to the server; also how long to wait for a server that is still starting.")] = 30.0,
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
    dicom_seg: Annotated[bool, typer.Option(help="For DICOM series, also write <stem>_seg.dcm (DICOM-SEG) referencing the series, one segment per label of the bundle; a scan whose DICOM-SEG cannot be written counts as failed (its mask is kept).")] = False,
    report: Annotated[Optional[Path], typer.Option(help="Write a JSON report of the run (per file, timings, failures).")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Segment scans with a Privacy-SF bundle; a bad file is reported and the rest still run."""
    batch = BatchOptions(out=out, axis=axis, overwrite=overwrite, quiet=quiet, debug=debug,
                         read=ReadOptions(volume_index=volume_index), outputs=OutputOptions(overlay, dicom_seg))
    engine_args = EngineArgs(engine=engine, backend=backend, precision=precision, mode=mode, batch_size=batch_size,
                             threads=threads)
    remote = RemoteArgs(server=server, model_name=model_name, client=_client_options(
        wire=wire, request_slices=request_slices, inflight=inflight, timeout_s=timeout, retries=retries, ca=ca,
        cert=cert, key=key))
    reports_errors(_infer)(inputs, engine_args, batch, remote, report, debug=debug)


@dataclass(frozen=True)
class EngineArgs:
    """Which bundle file, backend, precision and mode psf-infer runs, as typed (checked in `_infer`)."""

    engine: Path
    backend: str | None = None
    precision: str | None = None
    mode: str | None = None
    batch_size: int = 16
    threads: int | None = None


@dataclass(frozen=True)
class RemoteArgs:
    """Split mode: the map server and how to talk to it (psf.serve.client.ClientOptions)."""

    server: str | None
    model_name: str | None
    client: object  # ClientOptions, built lazily so --help never imports the Triton client


def _client_options(**fields):
    """ClientOptions from the flags (psf.serve.client imports tritonclient only when it connects)."""
    from psf.serve.client import ClientOptions

    return ClientOptions(**fields)


def _remote_map(manifest, remote: RemoteArgs):
    """The split-mode client, connected and checked against this bundle's map net."""
    from dataclasses import replace

    from psf.serve.client import RemoteMap
    from psf.serve.schema import WireSchema

    schema = WireSchema.for_bundle(manifest, remote.client.wire)
    if remote.model_name:
        schema = replace(schema, model_name=remote.model_name)
    return RemoteMap(remote.server, schema, remote.client).connect(wait_s=remote.client.timeout_s)  # waits for a starting server


def file_precision(manifest, engine: Path, precision: str | None = None) -> str | None:
    """The precision to run: --precision, else the --engine file's (an engine recorded in the manifest, or an
    ONNX variant). `STAGE.plan` is the engine psf-build made for that stage (psf.runtime.engines)."""
    from psf.errors import BundleError
    from psf.runtime.engines import ENGINE_SUFFIXES, resolve_engine_precision

    if engine.is_dir():
        return precision
    if engine.suffix in ENGINE_SUFFIXES:
        resolved = resolve_engine_precision(manifest, engine.name, precision)
        if resolved is None and not engine.exists():
            raise BundleError(f"{engine}: no such engine in the bundle at {manifest.root}; name one psf-build made "
                              f"(e.g. map.plan or map.fp16.plan) or the bundle folder")
        return precision or resolved
    for variant, files in manifest.variants.items():
        if any(f.file == engine.name for f in files.values()):
            return precision or ("int8" if variant.startswith("int8") else variant)
    return precision


def _infer(inputs: list[Path], args: EngineArgs, batch: BatchOptions, remote: RemoteArgs, report: Path | None) -> None:
    from psf.errors import UsageError
    from psf.manifest import load_manifest
    from psf.pipeline.segmenter import MODES, Segmenter, SegmenterOptions

    engine = args.engine
    backend = args.backend or SUFFIX_BACKEND.get(engine.suffix, "ort")
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r} is not available in this build; choose one of {', '.join(BACKENDS)}")
    mode = args.mode or ("split" if remote.server else "local")
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}; choose one of {', '.join(MODES)}")
    if (mode == "split") != bool(remote.server):
        raise UsageError("--mode split and --server go together: --server grpc://HOST:PORT maps on that server")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    manifest = load_manifest(engine)
    precision = file_precision(manifest, engine, args.precision) or ("fp16" if backend == "trt" else "fp32")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    mapper = _remote_map(manifest, remote) if remote.server else None
    batch_size = args.batch_size
    if mapper is not None:  # hand the client whole windows of requests, so `--inflight` of them can be in flight
        batch_size = max(batch_size, remote.client.request_slices * remote.client.inflight)
    options = SegmenterOptions(backend=backend, mode=mode, batch_size=batch_size, threads=args.threads,
                               precision=precision, remote=mapper)
    try:
        with Segmenter(manifest, options) as segmenter:
            summary = run_batch(inputs, segmenter, batch)
    finally:
        if mapper is not None:
            mapper.close()
    if mapper is not None:
        summary["wire"] = {"server": remote.server, "dtype": remote.client.wire, **vars(mapper.stats)}
    if report:
        from psf.io.atomic import write_text_atomic

        write_text_atomic(report, json.dumps(summary, indent=2) + "\n")
    print(summary_line(summary))
    if summary["failed"]:
        raise typer.Exit(1)
