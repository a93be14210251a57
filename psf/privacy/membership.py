"""Membership inference against the mapping net: was this encoded pair in the server's training set?

The attacker is the server itself (it holds the mapping net and sees encoded pairs). Scores are
per-slice losses |M(z_x) - z_y|^2; a lower loss says "member". Two attacks:
- loss threshold: the raw loss;
- reference (shadow) model: the score is target loss - reference loss, which removes how hard each slice
  is in itself (difficulty calibration; Watson et al., ICLR 2022; LiRA's offline variant, Carlini et al.,
  S&P 2022). Each slice is scored by a reference net that never trained on it ("out of fold"): two
  reference nets, each trained on every other slice along the scan axis (`interleaved_folds`) of all the
  encoded pairs the attacker holds. So every slice, member or not, has the reference's training data 1 mm
  on either side. A reference trained on one held-out split instead sat systematically nearer the target's
  training slices than the other split's (the demo cycles train, train, val, train, train, test): its loss
  alone told members from non-members (blind baseline 0.51-0.57) and pushed the calibrated AUC below 0.5.
An attack may pool several comparisons (members vs one group of non-members); its AUC counts
member/non-member pairs within each comparison only.

Two things keep the game honest. A record that is on both sides (the demo's blank slices above the head:
one constant image and an empty mask: 23 training slices and the whole top test block) has no membership
to infer; it is left out (`shared_records`). And one held-out block of neighbouring slices is one sample,
not eight, so the report gives every attack's AUC per block (`per_block`): a pooled AUC near 0.5 can be one
block that leaks and others that read the other way.
"""

from __future__ import annotations

import hashlib

import numpy as np


RADIUS_MM = 10.0  # members this close to a non-member share its anatomy (the demo's held-out blocks are 8 mm)


def interleaved_folds(positions: np.ndarray | None, count: int, folds: int = 2) -> np.ndarray:
    """Fold of each slice: its rank along the scan axis modulo `folds` (slices 1 mm apart alternate).

    Without positions, the slices' order stands in for them."""
    order = np.arange(count) if positions is None else np.argsort(np.argsort(positions, kind="stable"), kind="stable")
    return order % folds


def record_keys(images: np.ndarray, masks: np.ndarray) -> list[str]:
    """Each slice's record, (image, mask), as a digest: equal records have equal keys."""
    return [hashlib.sha1(np.ascontiguousarray(i).tobytes() + b"|" + np.ascontiguousarray(m).tobytes()).hexdigest()
            for i, m in zip(images, masks)]


def shared_records(keys: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """{split: bool per slice}: True where the same record is also on the other side (train vs val + test).

    Such a slice is a member and a non-member at once; the game leaves it out."""
    members = set(keys["train"])
    nonmembers = {k for s in ("val", "test") for k in keys[s]}
    return {s: np.array([k in (nonmembers if s == "train" else members) for k in keys[s]], bool) for s in keys}


def held_out_blocks(positions: np.ndarray, volumes: np.ndarray | None = None) -> list[np.ndarray]:
    """Indices of each run of neighbouring held-out slices of one scan (a gap wider than 1.5 slice spacings
    ends a run): a block of the single-template demo, or one subject's scan."""
    if volumes is None:
        volumes = np.zeros(len(positions), int)
    blocks = []
    for volume in np.unique(volumes):
        where = np.flatnonzero(volumes == volume)
        order = where[np.argsort(positions[where], kind="stable")]
        steps = np.diff(positions[order])
        spacing = np.median(steps[steps > 0]) if (steps > 0).any() else 1.0
        blocks += np.split(order, np.where(steps > 1.5 * spacing)[0] + 1)
    return blocks


def neighbours(member_positions: np.ndarray, nonmember_positions: np.ndarray, radius_mm: float = RADIUS_MM) -> np.ndarray:
    """(non-members, members) bool: which members lie within `radius_mm` of each non-member along the slice axis.

    Loss depends on anatomy tenfold more than on membership (near-empty slices above the brain are
    easy for every model), so the fair game compares a non-member only with members of its own anatomy."""
    return np.abs(nonmember_positions[:, None] - member_positions[None, :]) <= radius_mm + 1e-6


def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """P(score of a random member > score of a random non-member), ties counted half (Mann-Whitney)."""
    return pooled_auc([(member_scores, nonmember_scores)])


def pooled_auc(comparisons: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """roc_auc over the member/non-member pairs of every comparison together (pairs never cross comparisons)."""
    greater = pairs = 0.0
    for member_scores, nonmember_scores in comparisons:
        m, n = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
        greater += (m[:, None] > n[None, :]).sum() + 0.5 * (m[:, None] == n[None, :]).sum()
        pairs += len(m) * len(n)
    return float(greater / pairs)


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """Highest TPR whose threshold lets at most `fpr` of the non-members through (score > threshold = member).

    With n non-members, an FPR below 1/n allows no false positive at all: the threshold is then the
    highest non-member score; the report gives n so the reader knows the resolution."""
    n = np.sort(np.asarray(nonmember_scores, float))[::-1]
    allowed = int(np.floor(fpr * len(n)))
    threshold = n[allowed] if allowed < len(n) else -np.inf
    return float((np.asarray(member_scores) > threshold).mean())


def bootstrap_auc_ci(comparisons: list[tuple[np.ndarray, np.ndarray]], rounds: int = 1000, seed: int = 0,
                     strata: bool = False) -> list[float]:
    """95% interval of the pooled AUC over resamples: of every group, or (strata) of the strata themselves and
    the members within each. Neighbouring slices are alike, so even this is narrower than the truth."""
    rng = np.random.default_rng(seed)
    groups = [(np.asarray(m, float), np.asarray(n, float)) for m, n in comparisons]
    def resample():
        picked = [groups[i] for i in rng.integers(0, len(groups), len(groups))] if strata else groups
        return [(rng.choice(m, len(m)), rng.choice(n, len(n))) for m, n in picked]
    aucs = [pooled_auc(resample()) for _ in range(rounds)]
    return [round(float(q), 4) for q in np.percentile(aucs, [2.5, 97.5])]


def attack_report(*comparisons: tuple[np.ndarray, np.ndarray], strata: bool = False) -> dict:
    """AUC and its CI; TPR at low FPR (mean over comparisons, weighted by their non-members) for a global
    threshold only: within one-slice strata it is not defined."""
    weights = np.array([len(n) for _, n in comparisons], float)
    tpr = lambda fpr: None if strata else round(float(np.average([tpr_at_fpr(m, n, fpr) for m, n in comparisons], weights=weights)), 4)  # noqa: E731
    return {"auc": round(pooled_auc(list(comparisons)), 4),
            "auc_ci95": bootstrap_auc_ci(list(comparisons), strata=strata),
            "tpr_at_1pct_fpr": tpr(0.01), "tpr_at_0.1pct_fpr": tpr(0.001),
            "members": max(len(m) for m, _ in comparisons), "nonmembers": int(weights.sum())}


def headline_auc(attacks: dict, names: tuple[str, ...]) -> float:
    """The strongest attack's AUC, read in whichever direction is better for the attacker.

    An AUC well below 0.5 leaks as much as one above: a defense that over-corrects (members now look
    *less* like members) is found out by an attacker who calibrates on shadow data. So max(AUC, 1 - AUC)."""
    return max(max(attacks[n]["auc"], round(1 - attacks[n]["auc"], 4)) for n in names)


def membership_game(target: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                    positions: dict[str, np.ndarray | None], radius_mm: float = RADIUS_MM,
                    shared: dict[str, np.ndarray] | None = None, volumes: dict[str, np.ndarray | None] | None = None) -> dict:
    """Every attack from per-slice losses of train/val/test: `target`, of the attacked net; `reference`, each
    slice's loss under the attacker's reference net that never trained on it; `positions` (mm or None);
    `shared` (shared_records), slices left out because their record is on both sides; `volumes`, each slice's
    source scan (per-block rows then never join two scans).

    Headline rows are stratified by anatomy: each non-member (val, test) against the members within
    `radius_mm` (neighbours), AUC pooled over those pairs; `all_members` is the same attack with one
    global threshold over every member and non-member. The blind baseline scores by the reference loss
    alone: what anatomy and difficulty give away without a single query to the target (near 0.5 when the
    game is fair). Without positions the stratified rows fall back to the global ones. `per_block` repeats
    the stratified AUCs for each held-out block alone."""
    held_out = ("val", "test")
    scans = dict(volumes or {})
    excluded = {"members": 0, "nonmembers": 0}
    if shared is not None:
        keep = {s: ~shared[s] for s in target}
        excluded = {"members": int(shared["train"].sum()), "nonmembers": int(sum(shared[s].sum() for s in held_out))}
        target, reference = ({s: v[keep[s]] for s, v in d.items()} for d in (target, reference))
        positions = {s: None if p is None else p[keep[s]] for s, p in positions.items()}
        scans = {s: None if v is None else v[keep[s]] for s, v in scans.items()}
    known = all(positions[s] is not None for s in ("train", *held_out))
    attacks = {  # attack: [(member scores, non-member scores, positions of those non-members), ...]
        "loss_threshold": [(-target["train"], -target[s], positions[s]) for s in held_out],
        "reference_model": [(reference["train"] - target["train"], reference[s] - target[s], positions[s]) for s in held_out],
        "blind_baseline": [(-reference["train"], -reference[s], positions[s]) for s in held_out],
    }
    report, global_threshold = {}, {}
    blocks = [(split, block) for split, (_, _, where) in zip(held_out, attacks["loss_threshold"]) if known
              for block in held_out_blocks(where, scans.get(split))]
    per_block = [{"split": split, **({"scan": int(scans[split][block[0]])} if scans.get(split) is not None else {}),
                  "from_mm": round(float(positions[split][block].min()), 1),
                  "to_mm": round(float(positions[split][block].max()), 1)} for split, block in blocks]
    for name, comparisons in attacks.items():
        global_threshold[name] = attack_report(*((m, n) for m, n, _ in comparisons))
        if not known:
            report[name] = global_threshold[name]
            continue
        by_split = dict(zip(held_out, comparisons))
        strata, used = [], np.zeros(len(positions["train"]), bool)
        for (split, block), row in zip(blocks, per_block):
            members, nonmembers, where = by_split[split]
            near = neighbours(positions["train"], where[block], radius_mm)
            pairs = [(members[n], nonmembers[j : j + 1]) for j, n in zip(block, near) if n.any()]
            used |= near.any(0)
            strata += pairs
            row["nonmembers"], row[name] = len(pairs), round(pooled_auc(pairs), 4) if pairs else None
        report[name] = {**attack_report(*strata, strata=True), "members": int(used.sum()),
                        "nonmembers_without_neighbours": sum(len(n) for _, n, _ in comparisons) - len(strata)}
    return {**report, "all_members": global_threshold, "radius_mm": radius_mm if known else None,
            "per_block": per_block, "shared_records_excluded": excluded}
