"""DP-SGD for the server's mapping net (psf.train.dp): per-slice gradients, the accountant, the CLI and the bundle."""

from __future__ import annotations

import copy
import math

import pytest
import torch

pytest.importorskip("opacus", reason="DP training needs the 'dp' extra (opacus)")

from psf.errors import UsageError  # noqa: E402
from psf.models.config import ModelConfig  # noqa: E402
from psf.models.mapping import MappingNet  # noqa: E402
from psf.train.dp import DpOptions, group_gradients, privacy_summary, train_mapping_dp  # noqa: E402
from psf.train.latent_augment import LatentAugment  # noqa: E402
from psf.train.loop import Budget  # noqa: E402
from psf.train.stages import EncodedPairs, StageOptions  # noqa: E402

CFG = ModelConfig(image_size=64, map_width=8, map_norm="group")


def _pairs(slices: int, views: int, grouped: bool = True) -> EncodedPairs:
    gen = torch.Generator().manual_seed(0)
    zx = torch.rand(slices * views, 4, 16, 16, generator=gen) * 2 - 1
    zy = torch.tanh(2 * zx[:, :3])
    return EncodedPairs(zx, zy, torch.arange(slices).repeat(views) if grouped else None)


def test_group_gradients_are_each_slice_groups_own_gradient():
    """What gets clipped must be one group's gradient: the mean-loss gradient of its views alone."""
    from opacus import GradSampleModule

    torch.manual_seed(0)
    net = MappingNet(CFG)
    for m in net.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    z_x, z_y = torch.rand(7, 4, 8, 8), torch.rand(7, 3, 8, 8)
    owner = torch.tensor([0, 0, 1, 2, 2, 2, 1])  # groups of 2, 2 and 3 views, interleaved
    reference = copy.deepcopy(net)  # plain autograd, no Opacus hooks
    grads, _ = group_gradients(GradSampleModule(net, loss_reduction="sum"), z_x, z_y, owner, 3)
    net, params = reference, list(reference.parameters())
    for g in range(3):
        mine = owner == g
        net.zero_grad()
        torch.nn.functional.mse_loss(net(z_x[mine]), z_y[mine], reduction="none").flatten(1).mean(1).mean().backward()
        for p, per_group in zip(params, grads):
            assert torch.allclose(per_group[g], p.grad, atol=1e-6), g


def test_dp_training_spends_no_more_than_its_target_and_logs_it():
    pairs = _pairs(20, 3)
    opts = StageOptions(Budget(epochs=4), batch_size=8, crop=8, quiet=True)
    log = train_mapping_dp(MappingNet(CFG), pairs, opts, torch.Generator().manual_seed(0), LatentAugment(),
                           DpOptions(epsilon=4.0, group_batch=5))
    assert log["unit"] == "slice" and log["units"] == 20 and log["delta"] == pytest.approx(1 / 20)
    # As many steps as the undefended stage: 4 epochs of 60 pairs at 8 per step (7 steps an epoch) = 28.
    assert log["sample_rate"] == pytest.approx(0.25) and log["steps"] == log["planned_steps"] == 28
    assert 3.5 < log["epsilon"] <= 4.0 and log["noise_multiplier"] > 0.5 and math.isfinite(log["loss"])
    summary = privacy_summary({"stages": {"mapping": log}})
    assert summary["epsilon"] == log["epsilon"] and summary["unit"] == "slice"
    assert privacy_summary({"stages": {"mapping": {"steps": 3}}}) is None  # an undefended net has no guarantee
    # A step budget is the step count, whatever a step holds (here ungrouped pairs, 15 expected per step).
    stepped = train_mapping_dp(MappingNet(CFG), _pairs(20, 3, grouped=False), StageOptions(Budget(epochs=9, steps=30),
                               batch_size=8, crop=8, quiet=True), torch.Generator().manual_seed(0), LatentAugment(),
                               DpOptions(epsilon=math.inf, group_batch=15))
    assert stepped["unit"] == "pair" and stepped["units"] == 60 and stepped["planned_steps"] == 30  # without slice numbers
    assert stepped["epsilon"] is None  # epsilon inf: the control run, no noise and no guarantee
    norms = stepped["group_grad_norm_quantiles"]  # where to put the clip; only the control, which promises nothing, logs it
    assert 0 < norms["q10"] <= norms["q50"] <= norms["q90"] and "group_grad_norm_quantiles" not in log


def test_a_clipped_noisy_net_learns_less_than_a_free_one():
    """The same sampling without clipping or noise (epsilon inf, the control) fits better than epsilon 1."""
    pairs = _pairs(20, 3)
    opts = StageOptions(Budget(epochs=10), batch_size=8, crop=8, lr=1e-2, quiet=True)
    logs = {eps: train_mapping_dp(MappingNet(CFG), pairs, opts, torch.Generator().manual_seed(0), LatentAugment(),
                                  DpOptions(epsilon=eps, group_batch=5)) for eps in (1.0, math.inf)}
    assert logs[1.0]["epsilon"] <= 1.0 and logs[math.inf]["noise_multiplier"] == 0
    assert logs[math.inf]["loss"] < logs[1.0]["loss"]


def test_batchnorm_and_bad_targets_are_refused_with_the_fix():
    from typer.testing import CliRunner

    from psf.cli.main import app

    opts = StageOptions(Budget(epochs=1), crop=8, quiet=True)
    with pytest.raises(UsageError, match="map_norm='group'"):
        train_mapping_dp(MappingNet(ModelConfig(image_size=64, map_width=8)), _pairs(4, 2), opts, torch.Generator(),
                         LatentAugment(), DpOptions(epsilon=8.0))
    with pytest.raises(UsageError, match="mix"):  # blending two slices would put one slice in two groups' gradients
        train_mapping_dp(MappingNet(CFG), _pairs(4, 2), opts, torch.Generator(), LatentAugment(mix=0.3),
                         DpOptions(epsilon=8.0))
    with pytest.raises(UsageError, match="--delta"):
        DpOptions(epsilon=1.0, delta=2.0).check()
    result = CliRunner().invoke(app, ["train", ".", "--membership-defense", "dp"])
    assert result.exit_code == 1 and "needs --epsilon" in result.output
    result = CliRunner().invoke(app, ["train", ".", "--epsilon", "8"])
    assert result.exit_code == 1 and "add --membership-defense dp" in result.output


def test_server_stage_trains_dp_and_the_groupnorm_net_exports(tmp_path):
    """psf-train's server stage (also the multi-center hub's) with the dp defense; the GroupNorm mapping net
    then exports to ONNX as psf-export writes map.onnx, and ONNX Runtime agrees with torch."""
    from psf.export.graphs import Mapping
    from psf.export.onnx import PARITY_TOLERANCE, _export_graph
    from psf.models import build_networks
    from psf.runtime.ort import OrtRunner
    from psf.train.run import TrainOptions, server_stage

    cfg = ModelConfig(image_size=64, client_width=8, map_width=8, map_norm="group")
    opts = TrainOptions(data=tmp_path, out=tmp_path / "dp.pt", model=cfg, stage_epochs={"mapping": 1}, quiet=True,
                        membership_defense="dp", epsilon=8.0)
    nets = build_networks(cfg)
    pairs = _pairs(24, 2)
    pairs = EncodedPairs(pairs.z_image, pairs.z_mask, pairs.groups + 100)  # offset slice numbers, as multicenter's
    nets.mapping, log = server_stage(opts, nets.mapping, pairs, torch.Generator().manual_seed(0))
    assert log["defense"] == "dp" and log["units"] == 24 and 0 < log["epsilon"] <= 8
    graph = Mapping(nets.eval()).eval()
    z = torch.rand(3, 4, 16, 16) * 2 - 1
    _export_graph(graph, z, "z_image", "z_mask", tmp_path / "map.onnx")
    with OrtRunner(tmp_path / "map.onnx", threads=1) as runner, torch.no_grad():
        (got,) = runner.infer({"z_image": z.numpy()}).values()
        assert abs(got - graph(z).numpy()).max() < PARITY_TOLERANCE
    # int8 too: GroupNorm exports as InstanceNormalization, which stays fp32 in both Q/DQ files (ONNX Runtime's
    # quantizer refuses its shared scale/bias), so a DP model exports with psf-export's default precisions.
    from psf.export.precision import symmetric_zero_points, to_int8

    calibration = (torch.rand(8, 4, 16, 16) * 2 - 1).numpy()
    for symmetric, name in ((True, "map.int8.onnx"), (False, "map.int8-cpu.onnx")):
        to_int8(tmp_path / "map.onnx", tmp_path / name, calibration, "z_image", symmetric)
        with OrtRunner(tmp_path / name, threads=1) as runner, torch.no_grad():
            (got,) = runner.infer({"z_image": z.numpy()}).values()
            assert abs(got - graph(z).numpy()).max() < 0.2  # quantized, but the same function
    assert symmetric_zero_points(tmp_path / "map.int8.onnx")


def test_weight_average_follows_the_iterates_and_replaces_the_last_one():
    from psf.train.dp import _WeightAverage

    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = _WeightAverage(net, 0.5)
    for step in range(1, 41):  # the weight walks 1, 2, ..., 40; the average trails behind it
        with torch.no_grad():
            net.weight.fill_(float(step))
        average.update(step)
    average.apply()
    assert 37.0 < float(net.weight[0, 0]) < 40.0  # decay 0.5: about one step behind the last iterate
    assert _WeightAverage(net, None).average == []  # off: the last iterate stays
    with pytest.raises(UsageError, match="ema"):
        DpOptions(epsilon=1.0, ema=1.5).check()
    with pytest.raises(UsageError, match="accountant"):
        DpOptions(epsilon=1.0, accountant="gdp").check()
