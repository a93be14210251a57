"""Networks' shapes and the training stages' contracts (fast: no real training here)."""

from __future__ import annotations

import pytest
import torch

from psf.models import build_networks
from psf.models.config import ModelConfig
from psf.train.augment import geometric, one_hot
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.stages import EncodedPairs, StageOptions, train_mapping


def test_latent_shapes_and_range():
    cfg = ModelConfig(client_width=8, map_width=8)
    nets = build_networks(cfg).eval()
    with torch.no_grad():
        z = nets.image_encoder(torch.rand(2, 1, 256, 256))
        assert z.shape == (2, *cfg.latent_shape("image")) == (2, 4, 64, 64)
        assert z.abs().max() < 1
        z_mask = nets.mapping(z)
        assert z_mask.shape == (2, *cfg.latent_shape("mask"))
        assert nets.mask_decoder(z_mask).shape == (2, 3, 256, 256)
        # Fully convolutional: other sizes work too.
        assert nets.image_encoder(torch.rand(1, 1, 128, 96)).shape == (1, 4, 32, 24)


def test_bad_config_is_refused():
    with pytest.raises(Exception, match="multiple"):
        build_networks(ModelConfig(image_size=100, patch=8))


def test_server_stage_accepts_latents_only():
    nets = build_networks(ModelConfig(client_width=8, map_width=8))
    opts = StageOptions(Budget(epochs=1), batch_size=2, crop=8, quiet=True)
    with pytest.raises(TypeError, match="EncodedPairs"):
        train_mapping(nets.mapping, (torch.rand(4, 1, 256, 256), torch.zeros(4, 256, 256)), opts, torch.Generator())
    pairs = EncodedPairs(torch.rand(4, 4, 16, 16) * 2 - 1, torch.rand(4, 3, 16, 16) * 2 - 1)
    log = train_mapping(nets.mapping, pairs, opts, torch.Generator().manual_seed(0))
    assert log["steps"] == 2 and log["loss"] > 0


def test_latent_augmentations_keep_each_pair_consistent():
    """z_y is a fixed function of z_x here (first 3 channels x 10): every geometric move, and mixing, must
    keep it so; noise and token dropout touch z_x only."""
    z_x = torch.arange(4 * 4 * 16 * 16, dtype=torch.float32).reshape(4, 4, 16, 16) / 4096
    z_y = z_x[:, :3] * 10
    geometric_moves = LatentAugment.from_names("shift,flip,rot90,mix")
    for seed in range(6):
        sx, sy = geometric_moves(z_x, z_y, torch.Generator().manual_seed(seed), crop=8)
        assert sx.shape[-2:] == (8, 8)
        torch.testing.assert_close(sy, sx[:, :3] * 10)
    noisy = LatentAugment.from_names("token_dropout,noise")
    nx, ny = noisy(z_x, z_y, torch.Generator().manual_seed(0), crop=16)
    assert torch.equal(ny, z_y) and not torch.equal(nx, z_x)
    dropped = (nx.abs() < 0.2).all(1).float().mean()  # a dropped cell is zero (+ noise) in every channel
    assert 0.03 < dropped < 0.2


def test_latent_augment_names_round_trip_and_refuse_unknown():
    assert LatentAugment.from_names("none").names() == "none"
    assert LatentAugment().names() == "shift"
    assert LatentAugment.from_names("flip,shift").names() == "shift,flip"
    with pytest.raises(Exception, match="unknown latent augmentation"):
        LatentAugment.from_names("shift,cutmix")


def test_geometric_augmentation_keeps_image_and_mask_aligned():
    labels = torch.zeros(1, 64, 64, dtype=torch.long)
    labels[0, 10:30, 20:40] = 1
    image = labels[:, None].float()
    for seed in range(4):
        x, m = geometric(image, one_hot(labels, 3), torch.Generator().manual_seed(seed))
        assert torch.allclose(m.sum(1), torch.ones(1, 64, 64), atol=1e-5)
        bright = x[0, 0] > 0.5
        assert (m[0].argmax(0)[bright] == 1).float().mean() > 0.95


def test_map_crop_full_trains_on_the_whole_latent_grid_with_the_same_cells_per_step():
    from pathlib import Path

    from psf.train.run import TrainOptions, stage_options
    from tests.conftest import run_cli

    cfg = ModelConfig(image_size=64, patch=2)
    half, full = (stage_options(TrainOptions(Path("d"), Path("m.pt"), model=cfg, map_crop=c), "mapping") for c in ("half", "full"))
    assert (half.crop, half.batch_size, full.crop, full.batch_size) == (16, 32, 32, 8)
    assert half.batch_size * half.crop**2 == full.batch_size * full.crop**2
    from psf.fed.plan import make_plan, train_options  # the hub of a federation trains it the same way

    assert train_options(make_plan(TrainOptions(Path("d"), Path("m.pt"), model=cfg, map_crop="full"), rounds=2)).map_crop == "full"
    bad = run_cli("train", "nowhere", "--map-crop", "most")
    assert bad.returncode == 1 and "--map-crop 'most'" in bad.stderr
