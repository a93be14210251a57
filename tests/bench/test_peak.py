"""psf-bench's FLOP floor comes from this host's GEMM peak measured in the same run, not from a constant."""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")


def test_gemm_probe_measures_fp32_and_int8():
    from psf.bench.peak import gemm_peak

    fp32, int8 = gemm_peak(1, n=256, repeats=2), gemm_peak(1, integer=True, n=256, repeats=2)
    assert 0.1 < fp32 < 1e5 and 0.1 < int8 < 1e6  # G(FL)OP/s: positive, and not a division by ~zero


def test_floor_uses_the_measured_peak_unless_one_is_given():
    from psf.bench.run import BenchOptions, flop_floor

    rows = [{"backend": "ort", "precision": "fp32", "batch": 1, "stage": "pipeline", "p50": 8.0}]
    given = flop_floor(2_000_000_000, rows, BenchOptions(peak_gflops=100.0, threads=1))
    assert given == {"peak_gflops": 100.0, "peak_source": "--peak-gflops", "pipeline_ms": 20.0,
                     "pipeline_batch1_vs_floor": 0.4}
    measured = flop_floor(2_000_000_000, rows, BenchOptions(threads=1))
    assert measured["peak_source"].startswith("measured") and measured["peak_gflops"] > 0
    assert measured["pipeline_ms"] == pytest.approx(2_000_000_000 / (measured["peak_gflops"] * 1e9) * 1000, rel=1e-2)
