"""The measures the audit rests on: AUC/TPR, SSIM/PSNR, and the linear probe, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psf.privacy.membership import attack_report, headline_auc, membership_game, neighbours, pooled_auc, roc_auc, tpr_at_fpr
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
    references = {"val": {"train": target["train"] * 1.5, "test": target["test"] * 1.5},
                  "test": {"train": target["train"] * 2.0, "val": target["val"] * 2.0}}
    game = membership_game(target, references, positions)
    assert game["all_members"]["loss_threshold"]["auc"] > 0.55
    assert abs(game["loss_threshold"]["auc"] - 0.5) < 0.05 and game["loss_threshold"]["members"] == 200
    assert game["loss_threshold"]["nonmembers"] == 120 and game["loss_threshold"]["tpr_at_1pct_fpr"] is None
    assert abs(game["reference_model"]["auc"] - 0.5) < 0.05
    # Memorisation shows in the stratified game: members now lose 30 % less than their neighbours.
    target["train"] = target["train"] * 0.7
    assert membership_game(target, references, positions)["loss_threshold"]["auc"] > 0.75
    unknown = membership_game(target, references, {"train": None, "val": None, "test": None})
    assert unknown["loss_threshold"] == unknown["all_members"]["loss_threshold"] and unknown["radius_mm"] is None


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
