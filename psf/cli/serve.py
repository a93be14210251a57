"""psf-serve: the bundle's mapping net, and nothing else, behind an embedded Triton server (PyTriton)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, reports_errors
from psf.registry import BACKENDS
from psf.serve.launch import READY_BANNER


def serve(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (or any file in it); only map.onnx is loaded.")],
    grpc_port: Annotated[int, typer.Option(help="gRPC port (clients: psf-infer --server grpc://HOST:PORT).")] = 8001,
    http_port: Annotated[int, typer.Option(help="HTTP port: /v2/health/ready and model metadata (http:// clients only with --http-infer); 0 turns HTTP off.")] = 8000,
    http_infer: Annotated[bool, typer.Option(help="Also answer inference over HTTP (http:// clients). Off by default: one crafted HTTP request can stop this Triton build; open it on trusted networks only.")] = False,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port; 0 turns metrics off.")] = 8002,
    address: Annotated[str, typer.Option(help="Address to bind (0.0.0.0: all interfaces).")] = "0.0.0.0",
    backend: Annotated[str, typer.Option(help=f"Runs the map net: {', '.join(BACKENDS)}.")] = "ort",
    precision: Annotated[str, typer.Option(help="The map net's compute precision: fp32, fp16 or int8 (its ONNX variant, or map.<precision>.plan with --backend trt). The wire dtype is the client's --wire.")] = "fp32",
    threads: Annotated[Optional[int], typer.Option(help="Intra-op CPU threads per instance (default: all cores).")] = None,
    instances: Annotated[int, typer.Option(help="Model instances (sessions) serving requests in parallel.")] = 1,
    max_batch: Annotated[int, typer.Option(help="Largest batch Triton forms (and accepts in one request).")] = 64,
    batching: Annotated[bool, typer.Option(help="Dynamic batching: merge concurrent requests into one model call.")] = True,
    max_queue_delay_us: Annotated[int, typer.Option(help="How long a request may wait for others to batch with.")] = 500,
    tls_cert: Annotated[Optional[Path], typer.Option(help="PEM server certificate: gRPC with TLS (HTTP then binds 127.0.0.1 only).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_ca: Annotated[Optional[Path], typer.Option(help="PEM CA that signed client certificates (with --mtls).")] = None,
    mtls: Annotated[bool, typer.Option(help="Require a client certificate signed by --tls-ca (mutual TLS).")] = False,
    log_file: Annotated[Optional[Path], typer.Option(help="Write Triton's log here instead of the terminal.")] = None,
    write_repo: Annotated[Optional[Path], typer.Option(help="Instead of serving: write a Triton model repository for a tritonserver fleet here, then exit.")] = None,
    repo_kind: Annotated[str, typer.Option(help="With --write-repo: instance kind gpu, cpu or auto.")] = "gpu",
    overwrite: Annotated[bool, typer.Option(help="With --write-repo: replace models already there.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Serve the map net over gRPC and HTTP; it never sees images, masks or keys, and logs no tensor contents."""
    if write_repo:
        from psf.cli.export import write_triton_repo
        from psf.manifest import load_manifest

        reports_errors(lambda: write_triton_repo(load_manifest(bundle), write_repo, repo_kind, instances, max_batch, overwrite))(debug=debug)
        return

    def run() -> None:
        from psf.serve.server import ServeOptions, tls_from_flags

        options = ServeOptions(address=address, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                               backend=backend, precision=precision, threads=threads, instances=instances,
                               max_batch=max_batch, batching=batching, max_queue_delay_us=max_queue_delay_us,
                               tls=tls_from_flags(tls_cert, tls_key, tls_ca, mtls), log_file=log_file, debug=debug,
                               http_infer=http_infer)
        _serve(bundle, options)

    reports_errors(run)(debug=debug)


def _serve(bundle: Path, options) -> None:
    from psf.manifest import load_manifest
    from psf.progress import stderr
    from psf.serve.limits import RequestLimits
    from psf.serve.server import MapServer

    o = options
    manifest = load_manifest(bundle)
    server = MapServer(manifest, o)
    server.start()
    payload = manifest.payload_bytes()
    stderr.print(f"psf-serve: map net of {manifest.root} as {', '.join(s.model_name for s in server.schemas)}", highlight=False)
    stderr.print(f"  grpc{'s (TLS' + (', mutual' if o.tls.mutual else '') + ')' if o.tls else ''} {o.address}:{o.grpc_port}"
                 f"{f' | http {server.http_address}:{o.http_port} (/v2/health/ready: every model loaded; inference ' + ('on' if o.http_infer else 'off: --http-infer') + ')' if o.http_port else ''}"
                 f"{f' | metrics {server.http_address}:{o.metrics_port}' if o.metrics_port else ''}", highlight=False)
    stderr.print(f"  batching {'on, up to ' + str(o.max_batch) + f', {o.max_queue_delay_us} us queue delay' if o.batching else 'off'}"
                 f" | {o.instances} instance(s) per wire on {o.backend} ({o.precision}) | {payload['up']} B up, "
                 f"{payload['down']} B down per slice (fp16)", highlight=False)
    stderr.print(f"  {RequestLimits.for_schemas(server.schemas, o.max_batch).describe()}", highlight=False)
    if o.http_port and o.http_infer:
        stderr.print("  warning: --http-infer: Triton's HTTP endpoint allocates what a request declares before checking it; "
                     "one crafted request can stop the server. Let only trusted clients reach the HTTP port", highlight=False)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        stderr.print("  warning: running as root; run psf-serve as an unprivileged user (it needs no privilege: "
                     "ports above 1024, its files in a private temporary folder)", highlight=False)
    stderr.print(f"  {READY_BANNER}", highlight=False)
    server.serve_forever()
