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
    for _ in range(3):
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                                env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
        # Known, not fixed: in about one clean-clone run of three a gloo worker aborts at exit ("terminate called
        # without an active exception", SIGABRT) after training; torchrun then fails the run. Retried so CI measures
        # the training, and kept visible here; any other failure fails at once.
        if result.returncode == 0 or "terminate called without an active exception" not in result.stderr:
            break
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["training"]["processes"] == 2
    assert report["training"]["replicas_identical"] is True  # DDP kept both processes' networks equal
    assert report["training"]["stages"]["mapping"]["steps"] == 3
    assert result.stdout.count("test mean dice") == 1  # process 0 alone reports
