"""Where a benchmark's figures came from: commit, command, host, devices, library versions, seed.

Every script under benchmarks/ and psf-bench's --json write a `run.json` beside their output, in
benchmarks/results/<date>-<topic>/, so a figure quoted in docs/results.md can be traced and re-run.
Versions are read from package metadata, never by importing the package (importing torch to learn its
version would cost seconds and memory on an inference-only host).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

RESULTS_ROOT = Path("benchmarks/results")
LIBRARIES = ("privacy-sf", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "torch", "tensorrt", "cuda-python",
             "nvidia-pytriton", "tritonclient", "opacus", "nvflare")


def results_dir(topic: str, root: Path = RESULTS_ROOT, date: str | None = None) -> Path:
    """benchmarks/results/<YYYY-MM-DD>-<topic>/, created."""
    folder = Path(root) / f"{date or dt.date.today().isoformat()}-{topic}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_record(command: list[str] | None = None, seed: int | None = None, **extra) -> dict:
    """A JSON-ready description of this run (see the module docstring)."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "host": {"machine": platform.machine(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
                 "gpus": _gpus(), "python": platform.python_version(), "system": platform.platform()},
        "versions": {name: v for name in LIBRARIES if (v := _version(name))},
        "seed": seed,
        **extra,
    }


def write_run_json(folder: Path, command: list[str] | None = None, seed: int | None = None, **extra) -> Path:
    """run.json in `folder` (atomic)."""
    from psf.io.atomic import write_text_atomic

    path = Path(folder) / "run.json"
    write_text_atomic(path, json.dumps(run_record(command, seed, **extra), indent=2) + "\n")
    return path


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    """GPU names from nvidia-smi (empty where there is none; Jetson has no nvidia-smi: see psf.bench.jetson)."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
