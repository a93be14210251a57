"""psf-bench prints measured numbers; psf-train and psf-export run from the command line."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_bench_reports_latency_payload_flops_memory(tiny_bundle, tiny_model, mni_data, tmp_path):
    out = tmp_path / "bench.json"
    scan = next((mni_data / "test" / "images").iterdir())
    result = run_cli("bench", str(tiny_bundle), "--checkpoint", str(tiny_model), "--iters", "3", "--warmup", "1",
                     "--json", str(out), "--scan", str(scan), "-q", check=True)
    report = json.loads(out.read_text())
    rows = {(r["backend"], r["batch"], r["stage"]) for r in report["results"]}
    assert ("ort", 16, "pipeline") in rows and ("torch", 1, "end_to_end") in rows
    assert all(r["p50"] > 0 for r in report["results"])
    assert report["payload_bytes_per_slice"]["float16"]["up"] == 32768
    assert report["flops"]["pipeline"] > report["flops"]["map"] > 0
    assert report["peak_rss_mib"] > 0
    assert "| ort | fp32 | 1 | pipeline |" in result.stdout
    assert all(r["p99"] >= r["p50"] for r in report["results"])
    breakdown = report["scan_breakdown"]
    assert breakdown["slices"] > 0 and 0 < breakdown["not_model_share"] < 1
    assert set(breakdown["parts"]) == {"read_write", "preprocess", "model", "postprocess"}


def test_train_and_export_cli(mni_data, tmp_path):
    model = tmp_path / "m.pt"
    result = run_cli("train", str(mni_data), "-o", str(model), "--steps", "20", "--min-ceiling", "0", "--views", "1", "--client-width", "4",
                     "--map-width", "4", "-q", check=True)
    assert "test mean dice" in result.stdout
    ckpt = torch.load(model, weights_only=True)
    assert ckpt["labels"] == ["other", "grey_matter", "white_matter"]
    assert set(ckpt["metrics"]["test"]["dice"]) == {"other", "grey_matter", "white_matter"}
    assert "iou" in ckpt["metrics"]["test"] and ckpt["versions"]["torch"]
    assert json.loads(model.with_suffix(".json").read_text())["metrics"]["test"]["mean_dice"] >= 0
    exported = run_cli("export", str(model), "-o", str(tmp_path / "bundle"), check=True)
    assert "parity pipeline" in exported.stderr and (tmp_path / "bundle" / "psf.json").is_file()


def test_train_refuses_missing_data(tmp_path):
    result = run_cli("train", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m.pt"), "--minutes", "0.1")
    assert result.returncode == 1 and "psf data mni152" in result.stderr


def test_unet_baseline_trains_and_reports(mni_data, tmp_path):
    out = tmp_path / "unet.pt"
    result = run_cli("train", str(mni_data), "--baseline", "unet", "-o", str(out), "--minutes", "0.15", "--views", "1",
                     "-q", check=True)
    assert "baseline unet test mean dice" in result.stdout
    saved = torch.load(out, weights_only=True)
    assert saved["format"] == "psf-unet/1" and "test" in saved["metrics"]
