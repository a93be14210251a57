"""psf-audit on a real (tiny) model and the real demo data: every attack runs and the report has its keys."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_audit_writes_json_markdown_and_figure(tiny_model, mni_data, tmp_path):
    out = tmp_path / "audit"
    result = run_cli("audit", str(tiny_model), str(mni_data), "-o", str(out), "--minutes", "0.3", "-q", check=True)
    report = json.loads((out / "audit.json").read_text())
    for key in ("dice_privacy", "dice_unet", "membership_auc", "leaked_decoder_ssim", "prior_ssim", "inversion"):
        assert key in report, key
    assert [row["k"] for row in report["inversion"]] == [10, 100, 117]
    assert all(set(row) >= {"k", "psnr", "ssim"} for row in report["inversion"])
    assert 0 < report["prior_ssim"] < 1 and 0 <= report["membership_auc"] <= 1
    assert report["dice_unet"] is None and report["dice_privacy"] > 0
    assert set(report["targets"]) == {"leaked_decoder_ssim_within_prior_plus_0.05", "membership_auc_at_most_0.55",
                                      "leaked_decoder_ssim_after_intensity_fit_within_prior_plus_0.05"}
    assert "after_intensity_fit_k10" in report["leaked_decoder"]
    assert (out / "audit.png").stat().st_size > 10_000 and "## Membership inference" in (out / "audit.md").read_text()
    assert "membership AUC" in result.stdout


def test_audit_refuses_a_missing_baseline(tiny_model, mni_data, tmp_path):
    result = run_cli("audit", str(tiny_model), str(mni_data), "-o", str(tmp_path), "--baseline", str(tmp_path / "unet.pt"))
    assert result.returncode == 1 and "psf-train DATA/ --baseline unet" in result.stderr
