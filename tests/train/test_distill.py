"""The server's membership defense (psf.train.distill): split by slice, held-out teachers, one student."""

from __future__ import annotations

import pytest
import torch

from psf.errors import UsageError
from psf.models.config import ModelConfig
from psf.models.mapping import MappingNet
from psf.train.distill import fold_of_groups, train_mapping_distilled
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.stages import EncodedPairs, StageOptions, train_mapping
from tests.conftest import run_cli


def test_folds_keep_every_slice_and_its_neighbours_on_one_side():
    groups = torch.arange(40).repeat(4)  # 40 slices x 4 views, view-major as psf.train.views lays them out
    fold = fold_of_groups(groups, 2, torch.Generator().manual_seed(0), block=10)
    for g in range(40):
        assert len(set(fold[groups == g].tolist())) == 1
    for start in range(0, 40, 10):  # neighbouring slices (near-duplicates) share a fold
        assert len(set(fold[(groups >= start) & (groups < start + 10)].tolist())) == 1
    assert sorted(len(set(groups[fold == k].tolist())) for k in range(2)) == [20, 20]
    with pytest.raises(UsageError, match="membership-defense none"):
        fold_of_groups(torch.arange(5), 2, torch.Generator(), block=10)
    alternating = fold_of_groups(torch.arange(60), 3, torch.Generator(), block=10, alternate=True)
    assert alternating[::10].tolist() == [0, 1, 2, 0, 1, 2]  # a block's neighbours are always in other folds


def _loss(net, z_x, z_y):
    net.eval()
    with torch.no_grad():
        return float(((net(z_x) - z_y) ** 2).mean())


def test_distilled_net_does_not_memorise_its_training_targets():
    """Targets that are pure noise can only be memorised: trained directly, the net's loss on its own
    pairs falls far below its loss on new pairs; distilled from held-out teachers, it must not."""
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=64, map_width=8)
    make = lambda n: (torch.rand(n, 4, 16, 16) * 2 - 1, torch.rand(n, 3, 16, 16) * 1.6 - 0.8)  # noqa: E731
    (zx, zy), (new_x, new_y) = make(24), make(24)
    pairs = EncodedPairs(zx, zy, torch.arange(12).repeat(2))
    opts = StageOptions(Budget(epochs=80), batch_size=8, crop=16, quiet=True)
    direct = MappingNet(cfg)
    train_mapping(direct, pairs, opts, torch.Generator().manual_seed(0), LatentAugment.from_names("none"))
    student, log = train_mapping_distilled(cfg, pairs, opts, torch.Generator().manual_seed(0), LatentAugment.from_names("none"),
                                           block_slices=1)  # noise targets: no neighbours to keep together
    gap_direct = _loss(direct, new_x, new_y) - _loss(direct, zx, zy)
    gap_distilled = _loss(student, new_x, new_y) - _loss(student, zx, zy)
    assert gap_direct > 0.05, f"the direct net should memorise noise (gap {gap_direct:.3f})"
    assert abs(gap_distilled) < 0.2 * gap_direct, (gap_distilled, gap_direct)
    assert log["defense"] == "distill" and len(log["teachers"]) == 4 and log["student"]["steps"] > 0


def test_unknown_defense_is_refused_before_training(tmp_path):
    result = run_cli("train", str(tmp_path), "--membership-defense", "dp-sgd")
    assert result.returncode == 1 and "--membership-defense 'dp-sgd'" in result.stderr and "none, distill" in result.stderr
