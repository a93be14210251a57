"""psf-train --center: the NVIDIA FLARE federation (psf.fed) run in its simulator. The federation itself (three hospitals,
one failing, export of each hospital's model, the boundary) is tested in tests/fed; here the command's own checks."""

from __future__ import annotations

import pytest

from psf.errors import UsageError
from psf.train.multicenter import Center
from tests.conftest import run_cli


def test_center_spec_errors_name_the_fix(tmp_path):
    with pytest.raises(UsageError, match="NAME=DIR"):
        Center.parse("just_a_path")
    with pytest.raises(UsageError, match="not a folder"):
        Center.parse(f"a={tmp_path / 'missing'}")


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
