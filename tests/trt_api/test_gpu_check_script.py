"""benchmarks/trt_gpu_check.py, the script for the first GPU machine, runs here up to where a GPU is needed:
with the real cuda-bindings and no driver it reports each section as skipped, with CUDA's reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trt_api import releases

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_reports_what_it_could_not_run(tmp_path):
    try:
        path = releases.cuda_bindings_path(releases.CUDA_BINDINGS[0])
    except releases.Unavailable as exc:
        pytest.skip(str(exc))
    out = tmp_path / "check.json"
    env = {"PYTHONPATH": ":".join(map(str, path)), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "trt_gpu_check.py"), "--json", str(out)],
                            capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["section"]: r for r in json.loads(out.read_text())["rows"]}
    assert "skipped: no usable GPU" in rows["cuda"]["detail"] and "cudaError" in rows["cuda"]["detail"]
    assert rows["trt"]["detail"].startswith("skipped: not installed") or rows["trt"]["result"] != "FAIL"
    assert "section" in result.stdout and "check" in result.stdout  # the closing table
