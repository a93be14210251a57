"""psf-audit on a real (tiny) model and the real demo data: every attack runs and the report has its keys."""

from __future__ import annotations

import json
import re

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
    summary = result.stdout.strip().splitlines()[-1]  # the final line states the mapping net's DP guarantee, here none
    assert summary.startswith("audit:") and "membership AUC" in summary and "(no DP guarantee)" in summary
    assert report["dp"] is None


def test_audit_prints_the_spent_epsilon_next_to_the_membership_auc(mni_data, tmp_path):
    """A DP-trained mapping net (one epoch of tiny nets, epsilon 8): the final stdout line carries the epsilon
    the accountant spent, as audit.json and the checkpoint record it."""
    pytest.importorskip("opacus", reason="DP training needs the 'dp' extra (opacus)")
    from psf.models.config import ModelConfig
    from psf.train.run import TrainOptions, run_training
    from tests.conftest import TINY_SIZES

    model = tmp_path / "dp.pt"
    run_training(TrainOptions(data=mni_data, out=model, model=ModelConfig(**TINY_SIZES, map_norm="group"), minutes=None,
                              stage_epochs={"image_ae": 1, "mask_ae": 1, "mapping": 1}, views=1, seed=0, quiet=True,
                              membership_defense="dp", epsilon=8.0, min_ceiling=0))
    out = tmp_path / "audit"
    result = run_cli("audit", str(model), str(mni_data), "-o", str(out), "--minutes", "0.1", "-q", check=True)
    dp = json.loads((out / "audit.json").read_text())["dp"]
    assert dp["unit"] == "slice" and 0 < dp["epsilon"] <= 8
    summary = result.stdout.strip().splitlines()[-1]
    found = re.search(r"membership AUC [01]\.\d{3} \(DP epsilon ([0-9.]+) at delta ([0-9.e-]+) per slice\)", summary)
    assert found, summary
    assert float(found[1]) == pytest.approx(dp["epsilon"], rel=1e-4) and float(found[2]) == pytest.approx(dp["delta"], rel=0.05)


def test_audit_runs_on_a_two_channel_data_set(tmp_path):
    """Several input channels (MR sequences): the inversion attacks reconstruct every channel and SSIM averages
    them (it used to crash on the second channel)."""
    from psf.models.config import ModelConfig
    from psf.train.run import TrainOptions, run_training
    from tests.train.tiny import tiny_dataset

    data = tiny_dataset(tmp_path / "data", labels=4, channels=2, cases=3)
    model = tmp_path / "m.pt"
    run_training(TrainOptions(data=data, out=model, model=ModelConfig(image_size=32, patch=2, client_width=4, map_width=4),
                              views=2, quiet=True, min_ceiling=0.0, stage_steps={"image_ae": 4, "mask_ae": 4, "mapping": 4}))
    out = tmp_path / "audit"
    run_cli("audit", str(model), str(data), "-o", str(out), "--minutes", "0.1", "-q", check=True)
    report = json.loads((out / "audit.json").read_text())
    assert all(-1 <= row["ssim"] <= 1 for row in report["inversion"])
    assert report["leaked_decoder"]["attacks"]


def test_audit_refuses_a_missing_baseline(tiny_model, mni_data, tmp_path):
    result = run_cli("audit", str(tiny_model), str(mni_data), "-o", str(tmp_path), "--baseline", str(tmp_path / "unet.pt"))
    assert result.returncode == 1 and "psf-train DATA/ --baseline unet" in result.stderr
