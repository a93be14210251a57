"""Load on a map server: N concurrent clients, each sending its own latents; every answer is checked.

Map-only load (what psf-serve does under many hospitals) and end-to-end split vs local throughput at
the same concurrency (what a hospital gains or loses by mapping remotely). Inputs differ per client,
so an answer routed to the wrong client, or mixed up inside a dynamic batch, counts as wrong.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from psf.manifest import Manifest, verify_file
from psf.runtime.ort import OrtRunner
from psf.serve.client import ClientOptions, RemoteMap
from psf.serve.schema import WireSchema


@dataclass(frozen=True)
class LoadOptions:
    clients: int = 8
    slices: int = 200            # per client
    request_slices: int = 1      # per request: 1 leaves all batching to the server
    wire: str = "fp16"
    timeout_s: float = 60.0
    tolerance: float = 1e-2      # max abs error of a right answer (latents lie in [-1, 1])
    seed: int = 0
    threads: int = 1             # ORT threads per client session in the end-to-end run
    e2e_request_slices: tuple[int, ...] = (1, 8)  # end-to-end runs: slices per call (8 = psf-infer's default)
    client: ClientOptions = ClientOptions()


def client_latents(schema: WireSchema, count: int, seed: int) -> np.ndarray:
    """Latent-like inputs: tanh of Gaussians, as the encoder's tanh-bounded output."""
    rng = np.random.default_rng(seed)
    return np.tanh(rng.normal(0, 0.8, (count, *schema.input_shape))).astype(np.float32)


def expected_answers(manifest: Manifest, inputs: list[np.ndarray], schema: WireSchema) -> list[np.ndarray]:
    """What a faithful server returns: the map net run here on the same wire-rounded inputs."""
    name_in, name_out = schema.input_name, schema.output_name
    with OrtRunner(verify_file(manifest, "map")) as runner:
        return [np.concatenate([runner.infer({name_in: x[i : i + 32].astype(schema.dtype).astype(np.float32)})[name_out]
                                for i in range(0, len(x), 32)]) for x in inputs]


def _percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds or [np.nan]) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def run_map_load(url: str, manifest: Manifest, options: LoadOptions = LoadOptions()) -> dict:
    """`clients` threads, each with its own connection, send `slices` latents in requests of `request_slices`."""
    from dataclasses import replace

    schema = WireSchema.for_bundle(manifest, options.wire)
    inputs = [client_latents(schema, options.slices, options.seed + c) for c in range(options.clients)]
    expected = expected_answers(manifest, inputs, schema)
    start = threading.Barrier(options.clients + 1, timeout=options.timeout_s)
    client_options = replace(options.client, wire=options.wire, request_slices=options.request_slices, inflight=1,
                             timeout_s=options.timeout_s)
    remotes = [RemoteMap(url, schema, client_options).connect(wait_s=10) for _ in range(options.clients)]

    def one_client(c: int) -> dict:
        remote = remotes[c]
        latencies, answered, wrong, errors = [], 0, 0, []
        start.wait()
        try:
            for i in range(0, options.slices, options.request_slices):
                t0 = time.perf_counter()
                try:
                    out = remote.map(inputs[c][i : i + options.request_slices])
                except Exception as exc:  # a lost request is counted and reported, not raised
                    errors.append(str(exc)[:200])
                    continue
                latencies.append(time.perf_counter() - t0)
                answered += len(out)
                error = np.abs(out - expected[c][i : i + len(out)]).reshape(len(out), -1).max(1)
                wrong += int((error > options.tolerance).sum())
        finally:
            remote.close()
        return {"latencies": latencies, "answered": answered, "wrong": wrong, "errors": errors,
                "retries": remote.stats.retries, "bytes": remote.stats.bytes_up + remote.stats.bytes_down}

    with ThreadPoolExecutor(options.clients) as pool:
        futures = [pool.submit(one_client, c) for c in range(options.clients)]
        start.wait()
        t0 = time.perf_counter()
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    sent = options.clients * options.slices
    answered = sum(r["answered"] for r in results)
    return {
        "url": url, "wire": options.wire, "clients": options.clients, "slices_per_client": options.slices,
        "request_slices": options.request_slices, "sent": sent, "answered": answered, "lost": sent - answered,
        "wrong": sum(r["wrong"] for r in results), "retries": sum(r["retries"] for r in results),
        "errors": [e for r in results for e in r["errors"]][:5], "seconds": round(wall, 2),
        "slices_per_s": round(answered / wall, 1), "bytes_per_slice": round(sum(r["bytes"] for r in results) / max(1, answered)),
        **_percentiles([s for r in results for s in r["latencies"]]),
    }


def run_end_to_end(url: str, manifest: Manifest, options: LoadOptions = LoadOptions()) -> dict:
    """Slices/s through encode -> map -> decode with `clients` concurrent clients: map remote vs all local.

    Each client sends `request_slices` slices per call, in both modes."""
    from dataclasses import replace

    from psf.pipeline.segmenter import Segmenter, SegmenterOptions

    size = manifest.image_size
    images = np.random.default_rng(options.seed).uniform(0, 1, (16, 1, size, size)).astype(np.float32)
    schema = WireSchema.for_bundle(manifest, options.wire)
    remote = RemoteMap(url, schema, replace(options.client, wire=options.wire, request_slices=options.request_slices,
                                            inflight=options.clients, timeout_s=options.timeout_s)).connect(wait_s=10)
    results = {}
    try:
        for mode in ("local", "split"):
            seg_options = SegmenterOptions(mode=mode, batch_size=options.request_slices, threads=options.threads,
                                           remote=remote if mode == "split" else None)
            with Segmenter(manifest, seg_options) as segmenter:
                segmenter.probs(images[: options.request_slices])  # warm up

                def one_client(c: int) -> int:
                    done = 0
                    for i in range(0, options.slices, options.request_slices):
                        batch = images[(i + c) % 16 : (i + c) % 16 + 1].repeat(min(options.request_slices, options.slices - i), 0)
                        done += len(segmenter.probs(batch))
                    return done

                t0 = time.perf_counter()
                with ThreadPoolExecutor(options.clients) as pool:
                    done = sum(pool.map(one_client, range(options.clients)))
                results[mode] = round(done / (time.perf_counter() - t0), 1)
    finally:
        remote.close()
    return {"clients": options.clients, "slices_per_client": options.slices, "request_slices": options.request_slices,
            "local_slices_per_s": results["local"], "split_slices_per_s": results["split"],
            "split_over_local": round(results["split"] / results["local"], 3)}


def run_load_bench(bundle, manifest: Manifest, server: str | None, options: LoadOptions = LoadOptions(),
                   server_threads: int | None = None, end_to_end: bool = True) -> dict:
    """psf-bench --load: against `server`, or against loopback servers it starts, batching on and off."""
    from psf.serve.launch import LoopbackServer

    rows, e2e = [], None
    if server:
        rows.append({"server": server, "batching": "as configured", **run_map_load(server, manifest, options)})
        if end_to_end:
            e2e = _end_to_end_runs(server, manifest, options)
        return {"load": rows, "end_to_end": e2e}
    threads = ("--threads", str(server_threads)) if server_threads else ()
    for batching in (True, False):
        with LoopbackServer(bundle, threads + (() if batching else ("--no-batching",))) as started:
            rows.append({"server": "loopback psf serve", "batching": "on" if batching else "off",
                         **run_map_load(started.grpc_url, manifest, options)})
            if batching and end_to_end:
                e2e = _end_to_end_runs(started.grpc_url, manifest, options)
    return {"load": rows, "end_to_end": e2e}


def _end_to_end_runs(url: str, manifest: Manifest, options: LoadOptions) -> list[dict]:
    from dataclasses import replace

    return [run_end_to_end(url, manifest, replace(options, request_slices=n)) for n in options.e2e_request_slices]


def load_markdown(report: dict) -> str:
    lines = ["| server | batching | clients x slices | slices/request | slices/s | p50 ms | p99 ms | lost | wrong | bytes/slice |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["load"]:
        lines.append(f"| {r['server']} | {r['batching']} | {r['clients']} x {r['slices_per_client']} | {r['request_slices']} | "
                     f"{r['slices_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['lost']} | {r['wrong']} | {r['bytes_per_slice']} |")
    for e2e in report.get("end_to_end") or []:
        lines += ["", f"End to end, {e2e['clients']} concurrent clients, {e2e['request_slices']} slices per call: "
                      f"local {e2e['local_slices_per_s']} slices/s, split {e2e['split_slices_per_s']} slices/s "
                      f"(split/local = {e2e['split_over_local']:.2f})"]
    return "\n".join(lines) + "\n"
