"""Several processes through torchrun and DDP, on the CPU with gloo: 2 processes train one model."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.train.tiny import tiny_dataset


def test_torchrun_two_processes_train_one_model(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "psf", "train",
           str(data), "-o", str(out), "--steps", "3", "--views", "2", "--image-size", "32", "--client-width", "4",
           "--map-width", "4", "--device", "cpu", "--threads", "1", "--min-ceiling", "0", "-q"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["training"]["processes"] == 2
    assert report["training"]["replicas_identical"] is True  # DDP kept both processes' networks equal
    assert report["training"]["stages"]["mapping"]["steps"] == 3
    assert result.stdout.count("test mean dice") == 1  # process 0 alone reports
