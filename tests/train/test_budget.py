"""Budgets that reproduce: step budgets, the --minutes cap that says when it bit, same seed -> same model."""

from __future__ import annotations

import json
import time

import pytest
import torch

from psf.train.loop import Budget, run_loop
from tests.train.tiny import tiny_dataset

TINY = dict(image_size=32, client_width=4, map_width=4, image_latent=2, mask_latent=2)


def test_step_budget_runs_exactly_that_many_steps_and_the_schedule_follows_steps():
    seen = []
    log = run_loop("t", lambda idx, done: seen.append(done) or 0.0, 40, 8, Budget(steps=13), torch.Generator().manual_seed(0), quiet=True)
    assert log["steps"] == 13 and log["planned_steps"] == 13 and not log["time_bound"]
    assert seen == [i / 13 for i in range(13)]
    # epochs and steps together: whichever ends first
    assert run_loop("t", lambda i, d: 0.0, 40, 8, Budget(epochs=2, steps=100), torch.Generator(), quiet=True)["steps"] == 10


def test_a_time_cap_that_cuts_a_stage_short_says_so(capsys):
    def slow(idx, done):
        time.sleep(0.02)
        return 0.0

    log = run_loop("slow stage", slow, 40, 8, Budget(seconds=0.1, steps=1000), torch.Generator(), quiet=True)
    assert log["time_bound"] and log["steps"] < 1000
    assert "cap shaped this stage" in capsys.readouterr().err
    with pytest.raises(ValueError):
        Budget()


def _train(data, out, **extra):
    from psf.models.config import ModelConfig
    from psf.train.run import TrainOptions, run_training

    opts = dict(data=data, out=out, model=ModelConfig(**TINY), views=2, seed=3, quiet=True, min_ceiling=0.0,
                stage_steps={"image_ae": 4, "mask_ae": 4, "mapping": 4})
    return run_training(TrainOptions(**{**opts, **extra}))


def test_same_seed_twice_gives_the_identical_model(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    _train(data, tmp_path / "a.pt")
    _train(data, tmp_path / "b.pt")
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in "ab")
    for net, state in a["state_dicts"].items():
        for name, tensor in state.items():
            assert torch.equal(tensor, b["state_dicts"][net][name]), f"{net}.{name} differs"
    assert a["training"]["stages"]["mask_ae"]["steps"] == 4 and a["training"]["budget"]["kind"] == "steps"
    _train(data, tmp_path / "c.pt", seed=4)
    c = torch.load(tmp_path / "c.pt", weights_only=True)
    assert not torch.equal(c["state_dicts"]["mapping"]["head.1.weight"], a["state_dicts"]["mapping"]["head.1.weight"])


def test_cli_refuses_a_model_whose_mask_autoencoder_ceiling_is_low(tmp_path):
    from tests.conftest import run_cli

    data = tiny_dataset(tmp_path / "data")
    out = tmp_path / "m.pt"
    result = run_cli("train", str(data), "-o", str(out), "--steps", "2", "--views", "1", "--image-size", "32",
                     "--patch", "4", "--client-width", "4", "--map-width", "4", "--device", "cpu")
    assert result.returncode == 3, result.stderr
    assert "--steps mask_ae=4" in result.stderr and "below 0.90" in result.stderr
    assert "--patch 2" in result.stderr  # a finer latent grid is named first
    report = json.loads(out.with_suffix(".json").read_text())  # written, and marked
    assert report["training"]["ceiling_below_minimum"]["minimum"] == 0.9
    bad = run_cli("train", str(data), "-o", str(out), "--steps", "mask=3")
    assert bad.returncode == 1 and "unknown stage 'mask'" in bad.stderr


def test_the_default_patch_keeps_the_latent_grid_at_32_cells_or_more_up_to_patch_4():
    from psf.models.config import default_patch

    assert [default_patch(s) for s in (32, 64, 96, 128, 256, 512)] == [2, 2, 2, 4, 4, 4]
