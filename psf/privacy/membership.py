"""Membership inference against the mapping net: was this encoded pair in the server's training set?

The attacker is the server itself (it holds the mapping net and sees encoded pairs). Scores are
per-slice losses |M(z_x) - z_y|^2; a lower loss says "member". Two attacks:
- loss threshold: the raw loss;
- reference (shadow) model: a second mapping net the attacker trains on data it owns (the val split),
  and the score is target loss - reference loss, which removes how hard each slice is in itself
  (difficulty calibration; Watson et al., ICLR 2022; the idea behind LiRA's offline variant).
"""

from __future__ import annotations

import numpy as np


def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """P(score of a random member > score of a random non-member), ties counted half (Mann-Whitney)."""
    m, n = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    greater = (m[:, None] > n[None, :]).sum() + 0.5 * (m[:, None] == n[None, :]).sum()
    return float(greater / (len(m) * len(n)))


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """Highest TPR whose threshold lets at most `fpr` of the non-members through (score > threshold = member).

    With n non-members, an FPR below 1/n allows no false positive at all: the threshold is then the
    highest non-member score; the report gives n so the reader knows the resolution."""
    n = np.sort(np.asarray(nonmember_scores, float))[::-1]
    allowed = int(np.floor(fpr * len(n)))
    threshold = n[allowed] if allowed < len(n) else -np.inf
    return float((np.asarray(member_scores) > threshold).mean())


def bootstrap_auc_ci(member_scores: np.ndarray, nonmember_scores: np.ndarray, rounds: int = 1000, seed: int = 0) -> list[float]:
    """95% interval of the AUC over resamples of both groups: with ~100 slices a side, the AUC moves by +-0.05."""
    rng = np.random.default_rng(seed)
    m, n = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    aucs = [roc_auc(rng.choice(m, len(m)), rng.choice(n, len(n))) for _ in range(rounds)]
    return [round(float(q), 4) for q in np.percentile(aucs, [2.5, 97.5])]


def attack_report(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> dict:
    return {"auc": round(roc_auc(member_scores, nonmember_scores), 4),
            "auc_ci95": bootstrap_auc_ci(member_scores, nonmember_scores),
            "tpr_at_1pct_fpr": round(tpr_at_fpr(member_scores, nonmember_scores, 0.01), 4),
            "tpr_at_0.1pct_fpr": round(tpr_at_fpr(member_scores, nonmember_scores, 0.001), 4),
            "members": int(len(member_scores)), "nonmembers": int(len(nonmember_scores))}


def headline_auc(attacks: dict, names: tuple[str, ...]) -> float:
    """The strongest attack's AUC, read in whichever direction is better for the attacker.

    An AUC well below 0.5 leaks as much as one above: a defense that over-corrects (members now look
    *less* like members) is found out by an attacker who calibrates on shadow data. So max(AUC, 1 - AUC)."""
    return max(max(attacks[n]["auc"], round(1 - attacks[n]["auc"], 4)) for n in names)
