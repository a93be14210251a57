"""The measures the audit rests on: AUC/TPR, SSIM/PSNR, and the linear probe, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psf.privacy.membership import attack_report, headline_auc, roc_auc, tpr_at_fpr
from psf.privacy.probe import apply_probe, fit_probe
from psf.privacy.similarity import ssim_psnr


def test_auc_and_tpr_on_known_separations():
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert roc_auc(np.ones(5), np.ones(7)) == 0.5
    rng = np.random.default_rng(0)
    same = attack_report(rng.normal(size=2000), rng.normal(size=2000))
    assert abs(same["auc"] - 0.5) < 0.03 and same["auc_ci95"][0] < 0.5 < same["auc_ci95"][1]
    members, nonmembers = np.arange(100) + 50.0, np.arange(100, dtype=float)
    # Non-members 0..99. 1% FPR lets one non-member (99) through: threshold 98, members 99..149 pass.
    assert tpr_at_fpr(members, nonmembers, 0.01) == pytest.approx(0.51)
    assert tpr_at_fpr(members, nonmembers, 0.0) == pytest.approx(0.50)  # threshold 99: members 100..149


def test_headline_auc_counts_an_over_corrected_attack_too():
    """AUC 0.40 leaks like 0.60: the attacker reads the score the other way round."""
    attacks = {"loss_threshold": {"auc": 0.52}, "reference_model": {"auc": 0.40}}
    assert headline_auc(attacks, ("loss_threshold", "reference_model")) == pytest.approx(0.60)
    assert headline_auc(attacks, ("loss_threshold",)) == pytest.approx(0.52)


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
