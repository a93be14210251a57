"""psf-serve under a hostile neighbour: good-client throughput with and without an attacker, and log growth.

    python -m benchmarks.serve_hostile BUNDLE [--seconds 30] [--bad 10000] [--threads 2] [--request-slices 4] [--out DIR]

Starts `psf serve BUNDLE` on loopback (default options: dynamic batching on), then
1. 4 good clients alone for --seconds (checked answers), twice (before and after the attacker run);
2. the same 4 good clients while a fifth (its own process) cycles through NaN, Inf, a batch dimension of 2**32, a wrong
   tensor name, a wrong shape and batch 65 (issue 19);
3. --bad bad requests (the same cycle, 4 senders at once) and the growth of psf-serve's log (its stdout
   and stderr, Triton's log included).
Writes result.json, result.md and run.json under benchmarks/results/<date>-serve-hostile/.
Targets: 0 errors and 0 wrong answers among >= 2,000 good requests, hostile throughput >= 80% of the
run without the attacker, log growth <= 1 MB.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict
from pathlib import Path


def _flood(server, schema, count: int, senders: int = 4) -> dict:
    from psf.serve.hostile import attacker_cases

    cases, sent, refused, lock = attacker_cases(schema), [0], [0], threading.Lock()

    def send(k: int) -> None:
        for n in range(k, count, senders):
            case = cases[n % len(cases)]
            port = server.grpc_port if case.protocol == "grpc" else server.http_port
            ok, _ = case.send("127.0.0.1", port, 10.0)
            with lock:
                sent[0] += 1
                refused[0] += int(ok)

    before = len(server.log_text().encode())
    start = time.perf_counter()
    threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    time.sleep(1.0)  # let the log flush
    grown = server.log_text().encode()[before:]
    return {"sent": sent[0], "refused": refused[0], "seconds": round(seconds, 2), "log_bytes": len(grown),
            "log_lines": grown.count(b"\n"), "log_tail": grown.decode(errors="replace")[-1500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--bad", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2, help="psf-serve --threads")
    parser.add_argument("--request-slices", type=int, default=4, help="slices per good request")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from psf.bench.provenance import results_dir, write_run_json
    from psf.manifest import load_manifest
    from psf.runtime.ort import OrtRunner
    from psf.serve.hostile import adversarial_load
    from psf.serve.launch import LoopbackServer
    from psf.serve.schema import WireSchema

    manifest = load_manifest(args.bundle)
    schema = WireSchema.for_bundle(manifest, "fp16")
    runner = OrtRunner(manifest.path_of("map")).activate()
    map_fn = lambda z: runner.infer({schema.input_name: z})[schema.output_name]  # noqa: E731
    runs = {}
    with LoopbackServer(args.bundle, ("--threads", str(args.threads))) as server:
        for name, attacker in (("alone", False), ("hostile", True), ("alone_again", False)):
            result = adversarial_load(server.grpc_url, schema, map_fn, good_clients=4, attacker=attacker, seconds=args.seconds,
                                        request_slices=args.request_slices)
            runs[name] = {**asdict(result), "slices_per_s": round(result.slices_per_s, 1)}
            print(f"{name}: {result.requests} good requests, {result.errors} errors, {result.wrong} wrong, "
                  f"{result.slices_per_s:.0f} slices/s, {result.bad_sent} bad sent ({result.bad_answered} answered)", flush=True)
        flood = _flood(server, schema, args.bad)
        print(f"flood: {flood['sent']} bad requests, {flood['refused']} refused, log +{flood['log_bytes']} bytes "
              f"({flood['log_lines']} lines) in {flood['seconds']} s", flush=True)
    baseline = (runs["alone"]["slices_per_s"] + runs["alone_again"]["slices_per_s"]) / 2
    summary = {"good_requests_hostile": runs["hostile"]["requests"], "errors_hostile": runs["hostile"]["errors"],
               "wrong_hostile": runs["hostile"]["wrong"],
               "throughput_ratio": round(runs["hostile"]["slices_per_s"] / baseline, 3) if baseline else None,
               "log_bytes_per_10k_bad": round(flood["log_bytes"] * 10_000 / max(flood["sent"], 1))}
    summary["targets_met"] = (summary["errors_hostile"] == 0 and summary["wrong_hostile"] == 0
                              and summary["good_requests_hostile"] >= 2000 and (summary["throughput_ratio"] or 0) >= 0.8
                              and summary["log_bytes_per_10k_bad"] <= 1_000_000)
    out = args.out or results_dir("serve-hostile")
    (out / "result.json").write_text(json.dumps({"summary": summary, "runs": runs, "flood": flood}, indent=2) + "\n")
    (out / "result.md").write_text(
        "# psf-serve under a hostile neighbour\n\n"
        "| run | good requests | errors | wrong | slices/s | bad requests sent |\n|---|---|---|---|---|---|\n"
        + "".join(f"| {n} | {r['requests']} | {r['errors']} | {r['wrong']} | {r['slices_per_s']} | {r['bad_sent']} |\n"
                  for n, r in runs.items())
        + f"\nThroughput under attack / alone: {summary['throughput_ratio']} (target >= 0.8).  \n"
        f"Log growth: {flood['log_bytes']} bytes for {flood['sent']} bad requests (target <= 1 MB per 10,000).\n")
    write_run_json(out, seed=0, seconds=args.seconds, bad=args.bad, threads=args.threads, request_slices=args.request_slices)
    print(json.dumps(summary), f"-> {out}")


if __name__ == "__main__":
    main()
