"""The measures the audit rests on: AUC/TPR, SSIM/PSNR, and the linear probe, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psf.privacy.membership import (attack_report, headline_auc, interleaved_folds, membership_game, neighbours, pooled_auc,
                                    record_keys, shared_records,
                                    roc_auc, tpr_at_fpr)
from psf.privacy.probe import apply_probe, fit_probe
from psf.privacy.similarity import ssim_psnr


def test_auc_and_tpr_on_known_separations():
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert roc_auc(np.ones(5), np.ones(7)) == 0.5
    rng = np.random.default_rng(0)
    same = attack_report((rng.normal(size=2000), rng.normal(size=2000)))
    assert abs(same["auc"] - 0.5) < 0.03 and same["auc_ci95"][0] < 0.5 < same["auc_ci95"][1]
    members, nonmembers = np.arange(100) + 50.0, np.arange(100, dtype=float)
    # Non-members 0..99. 1% FPR lets one non-member (99) through: threshold 98, members 99..149 pass.
    assert tpr_at_fpr(members, nonmembers, 0.01) == pytest.approx(0.51)
    assert tpr_at_fpr(members, nonmembers, 0.0) == pytest.approx(0.50)  # threshold 99: members 100..149


def test_pooled_auc_never_compares_across_references():
    """Each comparison has its own reference, so its scores share no scale with the other's."""
    perfect, inverted = (np.array([10.0, 11.0]), np.array([9.0])), (np.array([0.0, 1.0]), np.array([5.0]))
    assert pooled_auc([perfect, inverted]) == 0.5
    assert pooled_auc([perfect, (np.array([0.0, 1.0]), np.array([-5.0]))]) == 1.0
    assert roc_auc(np.array([10.0, 11.0, 0.0, 1.0]), np.array([9.0, -5.0])) == 0.75  # what concatenating would say


def test_headline_auc_counts_an_over_corrected_attack_too():
    """AUC 0.40 leaks like 0.60: the attacker reads the score the other way round."""
    attacks = {"loss_threshold": {"auc": 0.52}, "reference_model": {"auc": 0.40}}
    assert headline_auc(attacks, ("loss_threshold", "reference_model")) == pytest.approx(0.60)
    assert headline_auc(attacks, ("loss_threshold",)) == pytest.approx(0.52)


def test_neighbours_are_members_of_the_same_anatomy():
    members = np.array([10.0, 20.0, 50.0, 80.0, 90.0])
    near = neighbours(members, np.array([15.0, 85.0]), radius_mm=5.0)
    assert near.tolist() == [[True, True, False, False, False], [False, False, False, True, True]]


def test_anatomy_that_only_members_have_does_not_make_the_headline():
    """Loss follows anatomy (a ramp over 0..100 mm); members and non-members at one position lose alike;
    40 easy members beyond 110 mm (near-empty slices) lose ~0. A global threshold reads that as
    membership; the stratified game, each non-member against the members within 10 mm, does not."""
    rng = np.random.default_rng(0)
    ramp = lambda where: 0.002 + 0.0002 * where * rng.uniform(0.8, 1.2, len(where))  # noqa: E731
    positions = {"train": np.concatenate([np.linspace(0, 100, 200), np.linspace(115, 135, 40)]),
                 "val": np.linspace(0, 100, 60), "test": np.linspace(1, 99, 60)}
    target = {"train": np.concatenate([ramp(positions["train"][:200]), np.full(40, 1e-4)]),
              "val": ramp(positions["val"]), "test": ramp(positions["test"])}
    reference = {s: losses * 1.5 for s, losses in target.items()}
    game = membership_game(target, reference, positions)
    assert game["all_members"]["loss_threshold"]["auc"] > 0.55
    assert abs(game["loss_threshold"]["auc"] - 0.5) < 0.05 and game["loss_threshold"]["members"] == 200
    assert game["loss_threshold"]["nonmembers"] == 120 and game["loss_threshold"]["tpr_at_1pct_fpr"] is None
    assert abs(game["reference_model"]["auc"] - 0.5) < 0.05
    # Memorisation shows in the stratified game: members now lose 30 % less than their neighbours.
    target["train"] = target["train"] * 0.7
    assert membership_game(target, reference, positions)["loss_threshold"]["auc"] > 0.75
    unknown = membership_game(target, reference, {"train": None, "val": None, "test": None})
    assert unknown["loss_threshold"] == unknown["all_members"]["loss_threshold"] and unknown["radius_mm"] is None


def test_records_on_both_sides_are_left_out_of_the_game():
    """Blank slices (one constant image, an empty mask) are both members and non-members; they tie or, next to
    slices with anatomy, read as members. The game drops them from both sides and says how many."""
    rng = np.random.default_rng(1)
    blank, anatomy = np.zeros((4, 4), np.float32), lambda: rng.normal(size=(4, 4)).astype(np.float32)
    images = {"train": [anatomy() for _ in range(20)] + [blank] * 6, "val": [anatomy() for _ in range(8)], "test": [blank] * 4}
    keys = {s: record_keys(np.stack(v), np.zeros((len(v), 4, 4), np.uint8)) for s, v in images.items()}
    shared = shared_records(keys)
    assert shared["train"].tolist() == [False] * 20 + [True] * 6 and shared["test"].all() and not shared["val"].any()
    positions = {"train": np.concatenate([np.arange(20.0), np.arange(30.0, 36.0)]), "val": np.arange(20.0, 28.0),
                 "test": np.arange(36.0, 40.0)}
    target = {"train": np.concatenate([rng.uniform(1, 2, 20), np.full(6, 0.01)]), "val": rng.uniform(1, 2, 8), "test": np.full(4, 0.01)}
    reference = {s: np.ones(len(v)) for s, v in target.items()}
    assert membership_game(target, reference, positions)["loss_threshold"]["auc"] > 0.6  # blank members beside the val block
    game = membership_game(target, reference, positions, shared=shared)
    assert game["shared_records_excluded"] == {"members": 6, "nonmembers": 4}
    assert abs(game["loss_threshold"]["auc"] - 0.5) < 0.2 and game["loss_threshold"]["nonmembers"] == 8
    assert [b["split"] for b in game["per_block"]] == ["val"]


def test_per_block_auc_shows_the_block_that_leaks():
    """Two held-out blocks: members beside the first lose half as much as it does, beside the second alike."""
    rng = np.random.default_rng(2)
    positions = {"train": np.concatenate([np.arange(0.0, 10.0), np.arange(30.0, 40.0), np.arange(60.0, 70.0)]),
                 "val": np.arange(12.0, 20.0), "test": np.arange(48.0, 56.0)}
    target = {"train": np.concatenate([rng.uniform(0.5, 1, 20), rng.uniform(1, 2, 10)]), "val": rng.uniform(1, 2, 8),
              "test": rng.uniform(1, 2, 8)}
    target["train"][10:20] = rng.uniform(1, 2, 10)  # the members at 30-39 mm sit beside both blocks
    reference = {s: np.ones(len(v)) for s, v in target.items()}
    blocks = membership_game(target, reference, positions, radius_mm=12.0)["per_block"]
    assert [(b["split"], b["from_mm"], b["to_mm"], b["nonmembers"]) for b in blocks] == [("val", 12.0, 19.0, 8), ("test", 48.0, 55.0, 8)]
    assert blocks[0]["loss_threshold"] > 0.75 and abs(blocks[1]["loss_threshold"] - 0.5) < 0.25
    assert blocks[0]["blind_baseline"] == 0.5
    # Subjects: two held-out scans at the same positions are two rows, never one run of slices.
    positions["test"] = np.arange(12.0, 20.0)
    scans = {"train": np.zeros(30, int), "val": np.zeros(8, int), "test": np.repeat([0, 1], 4)}
    blocks = membership_game(target, reference, positions, radius_mm=12.0, volumes=scans)["per_block"]
    assert [(b["split"], b["scan"], b["from_mm"], b["to_mm"]) for b in blocks] == [("val", 0, 12.0, 19.0), ("test", 0, 12.0, 15.0), ("test", 1, 16.0, 19.0)]


def test_reference_folds_sit_as_near_to_non_members_as_to_members():
    """On the demo's layout (blocks cycling train, train, val, train, train, test; 1-slice gaps), a reference
    trained on one held-out split is nearer the training slices than the other split's; the interleaved
    folds put the other fold's nearest slice 1-2 mm from every slice, member or not."""
    from psf.data.mni152 import assign_splits

    split = np.array([s or "" for s in assign_splits(190, 10, 1)])
    z = np.arange(190, dtype=float)
    held_out = np.isin(split, ("val", "test"))
    kept = split != ""

    def distance_to(pool: np.ndarray, queries: np.ndarray) -> np.ndarray:
        return np.abs(z[queries][:, None] - z[pool][None, :]).min(1)

    members_near_test = (split == "train") & (np.abs(z[:, None] - z[split == "test"][None, :]).min(1) <= 10)
    old = distance_to(split == "val", members_near_test).mean() - distance_to(split == "val", split == "test").mean()
    assert old < -4  # the val-trained reference sat > 4 mm nearer the members it scored than the non-members
    fold = np.full(190, -1)
    fold[kept] = interleaved_folds(z[kept] * 1.0 + 0.5, int(kept.sum()))
    for k in (0, 1):
        other, scored = kept & (fold != k), kept & (fold == k)
        d = distance_to(other, scored)
        assert d.max() <= 2 and abs(d[held_out[scored]].mean() - d[~held_out[scored]].mean()) < 0.3
    assert interleaved_folds(None, 5).tolist() == [0, 1, 0, 1, 0]
    assert interleaved_folds(np.array([3.0, 1.0, 2.0]), 3).tolist() == [0, 0, 1]


def test_slice_positions_follow_the_affine_in_mm(mni_data):
    """The demo's volumes are runs of one template: positions continue across files, 1 mm apart, train spans the rest."""
    from psf.pipeline.preprocess import DEFAULT_NORMALIZATION
    from psf.train.data import load_split, slice_positions

    flipped = np.diag([1.0, 1.0, -2.0, 1.0])
    flipped[2, 3] = 30.0
    assert slice_positions(flipped, 3).tolist() == [-30.0, -28.0, -26.0]  # along the axis' own direction
    assert slice_positions(None, 3) is None
    splits = {s: load_split(mni_data, s, 256, DEFAULT_NORMALIZATION) for s in ("train", "test")}
    test = splits["test"].positions
    assert len(test) == len(splits["test"]) and np.all(np.diff(test)[np.diff(test) < 2] == 1.0)
    assert splits["train"].positions.min() < test.min() and splits["train"].positions.max() > test.max()


def test_ssim_is_one_for_identity_and_low_for_noise():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (2, 1, 64, 64)).astype(np.float32)
    valid = np.ones((2, 64, 64), bool)
    ssim, psnr = ssim_psnr(image, image, valid)
    assert np.allclose(ssim, 1.0, atol=1e-4) and (psnr > 90).all()
    ssim, psnr = ssim_psnr(rng.uniform(0, 1, image.shape), image, valid)
    assert (ssim < 0.1).all() and (psnr < 10).all()
    two = np.concatenate([image, rng.uniform(0, 1, image.shape).astype(np.float32)], axis=1)  # 2 channels (MR sequences)
    ssim, _ = ssim_psnr(np.concatenate([image, image], axis=1), two, valid)  # one channel right, one wrong: the mean
    assert np.all((ssim > 0.45) & (ssim < 0.6))


def test_ssim_measures_z_scored_ct_on_its_own_range():
    """CT is z-scored (values far outside [0, 1]): a close reconstruction must score near 1 and a blurred
    one lower; clipping both to [0, 1] would compare mostly saturated pixels."""
    rng = np.random.default_rng(0)
    smooth = torch.nn.functional.avg_pool2d(torch.from_numpy(rng.normal(size=(2, 1, 64, 64)).astype(np.float32)), 5, 1, 2)
    image = (4 * smooth / smooth.std()).numpy()  # roughly -10 .. 10
    valid = np.ones((2, 64, 64), bool)
    close, _ = ssim_psnr(image + rng.normal(0, 0.05, image.shape).astype(np.float32), image, valid)
    blurred, _ = ssim_psnr(torch.nn.functional.avg_pool2d(torch.from_numpy(image), 9, 1, 4).numpy(), image, valid)
    assert (close > 0.95).all() and (blurred < close - 0.1).all()
    from psf.privacy.similarity import _channel_range

    in_unit = (image - image.min()) / (image.max() - image.min())  # images already in [0, 1] keep that scale
    lo, hi = _channel_range(in_unit, valid)
    assert np.allclose(lo, 0.0) and np.allclose(hi, 1.0)
    lo, hi = _channel_range(image, valid)
    assert np.allclose(lo, image.min()) and np.allclose(hi, image.max())


def test_linear_probe_inverts_a_linear_encoding_exactly_and_not_a_random_one():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0, 1, (6, 1, 32, 32)).astype(np.float32))
    patches = torch.nn.functional.pixel_unshuffle(images, 4)  # (6, 16, 8, 8): pixels re-arranged
    mix = torch.from_numpy(rng.normal(size=(16, 16)).astype(np.float32))
    z = torch.einsum("oc,nchw->nohw", mix, patches)  # an invertible linear code
    weights = fit_probe(z[:4], images[:4], 4, ridge=1e-9)
    recon = apply_probe(weights, z[4:], 4, 1)
    np.testing.assert_allclose(recon, images[4:].numpy(), atol=1e-3)
    noise = torch.from_numpy(rng.normal(size=z.shape).astype(np.float32))  # a code unrelated to the pixels
    recon = apply_probe(fit_probe(noise[:4], images[:4], 4), noise[4:], 4, 1)
    assert np.abs(recon - images[4:].numpy()).mean() > 0.2
