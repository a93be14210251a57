"""Latency measurement: warm up, then time each call with perf_counter; report percentiles in ms."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(call: Callable[[], object], warmup: int, iters: int, max_seconds: float = 20.0) -> dict:
    """p50/p95/p99/mean latency (ms) of `call`, at most `iters` timed calls and about `max_seconds`."""
    for _ in range(warmup):
        call()
    samples = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < iters and (len(samples) < 3 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    ms = np.array(samples) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3),
            "mean": round(float(ms.mean()), 3), "n": len(samples)}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss is KiB)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
