"""psf-train --center: the NVIDIA FLARE federation (psf.fed) run in its simulator, one mapping net on all latents."""

from __future__ import annotations

import json

import pytest

from psf.errors import UsageError
from psf.train.multicenter import Center
from tests.conftest import run_cli


def test_center_spec_errors_name_the_fix(tmp_path):
    with pytest.raises(UsageError, match="NAME=DIR"):
        Center.parse("just_a_path")
    with pytest.raises(UsageError, match="not a folder"):
        Center.parse(f"a={tmp_path / 'missing'}")


@pytest.mark.slow
def test_two_centers_train_one_model_with_per_center_dice(tmp_path):
    pytest.importorskip("nvflare")
    run_cli("data", "mni152", str(tmp_path / "centers"), "--centers", "2", check=True)
    out = tmp_path / "fed.pt"
    result = run_cli("train", "--center", f"a={tmp_path / 'centers' / 'center_a'}", "--center",
                     f"b={tmp_path / 'centers' / 'center_b'}", "-o", str(out), "--steps", "30", "--views", "2",
                     "--rounds", "2", "--client-width", "8", "--map-width", "8", "--membership-defense", "distill",
                     "--min-ceiling", "0", "-q", check=True)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["training"]["stages"]["mapping"]["defense"] == "distill"  # slices of both centers split into folds
    assert set(report["metrics"]["centers"]) == {"a", "b"}
    assert report["training"]["federated_rounds"] == 2 and len(report["training"]["stages"]["rounds"]) == 2
    assert all(0.0 < m["mean_dice"] <= 1 for m in report["metrics"]["centers"].values())
    assert "a: multi-center dice" in result.stdout and "b: multi-center dice" in result.stdout
    run_cli("export", str(out), "-o", str(tmp_path / "bundle"), check=True)  # a federated model exports like any other


def test_train_refuses_data_and_centers_together(tmp_path):
    result = run_cli("train", str(tmp_path), "--center", f"a={tmp_path}", "--center", f"b={tmp_path}")
    assert result.returncode == 1 and "not both" in result.stderr


def test_each_center_gets_the_budget_it_would_have_alone(tmp_path):
    """Centers of a federation train in parallel: over all rounds, each spends what it would alone."""
    from psf.train.multicenter import _stage
    from psf.train.run import TrainOptions, stage_options

    opts = TrainOptions(data=tmp_path, out=tmp_path / "m.pt", minutes=10)
    for stage in ("image_ae", "mask_ae"):
        rounds = [_stage(opts, stage, 4, r) for r in range(4)]
        assert sum(o.budget.seconds for o in rounds) == pytest.approx(stage_options(opts, stage).budget.seconds)
        assert [o.schedule for o in rounds] == [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
