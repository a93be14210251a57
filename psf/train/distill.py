"""The server's membership defense: split the encoded pairs, train teachers, distill one mapping net.

A mapping net trained on (z_x, z_y) fits its training slices better than unseen ones, and that gap is
what a membership attack reads (psf-audit, same anatomy: AUC 0.85-0.90 on the demo model). Here the
deployed net never sees a true z_y. The server splits its slices into `folds` parts (all views of a
slice, and its neighbours in blocks of 10 slice numbers, in one part, by `EncodedPairs.groups`), trains
one teacher per part on the other parts, and labels every pair with the prediction of the teacher
that did not train on it. A fresh student is then trained on (z_x, that prediction): for a training
slice it learns what a model that never saw the slice predicts, so its loss on members looks like its
loss on non-members. This is SELENA's Split-AI +
self-distillation (Tang et al., USENIX Security 2022). Four folds by default: with two (teachers on
halves) the same-anatomy AUC stayed at 0.60-0.63 in the benchmark on the single-template demo, with four
0.54-0.62, over-correcting (members lose more than their neighbours; that game compares unlike slices,
RESULTS.md). On 50 synthetic subjects (psf data mni152 --subjects 50), where members and non-members are
drawn alike, four folds take the audit's headline from 0.69 to 0.51-0.53 (two seeds), for 0.02-0.03 Dice.
`seen_folds` (several blind teachers per slice), `teacher_weight` < 1 (true latents mixed in) and
`alternate` (folds alternating along the scan) are benchmark knobs; none helped so far.

Cost: the teachers take `teacher_share` of the server's budget, so the student trains for less time
than a plain mapping net would; mean Dice 0.950 -> 0.937 in the benchmark, 0.957 -> 0.928-0.937 on the 50 subjects. Opt-in
(`psf-train --membership-defense distill`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from psf.models.config import ModelConfig
from psf.models.mapping import MappingNet
from psf.progress import stderr
from psf.train.latent_augment import LatentAugment
from psf.train.stages import EncodedPairs, StageOptions, train_mapping

DEFENSES = ("none", "distill", "dp")  # dp: psf.train.dp (DP-SGD, Opacus)


BLOCK_SLICES = 10  # neighbouring slices are near-duplicates: a teacher must be blind to a slice's whole block


def fold_of_groups(groups: torch.Tensor, folds: int, gen: torch.Generator, block: int = BLOCK_SLICES,
                   alternate: bool = False) -> torch.Tensor:
    """A fold per pair: slice numbers (`groups`, consecutive along a scan) in runs of `block` go to one fold,
    folds as equal in blocks as possible.

    A fold of single random slices let a teacher train on slice z and label slice z + 1, 1 mm away and
    nearly identical: its "held-out" labels were near-truth on exactly the training slices, and the
    distilled net leaked membership again (same-anatomy AUC 0.70 in one benchmark run)."""
    blocks, inverse = torch.unique(groups // block, return_inverse=True)
    if len(blocks) < folds:
        from psf.errors import UsageError

        raise UsageError(f"the membership defense splits the training slices into {folds} parts of {block}-slice blocks, "
                         f"but there are {len(blocks)} blocks; train on more slices or use --membership-defense none")
    fold = torch.empty(len(blocks), dtype=torch.long)
    order = torch.arange(len(blocks)) if alternate else torch.randperm(len(blocks), generator=gen)
    fold[order] = torch.arange(len(blocks)) % folds
    return fold[inverse]


@torch.no_grad()
def _predict(net: torch.nn.Module, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    net.eval()
    return torch.cat([net(z[i : i + batch_size]) for i in range(0, len(z), batch_size)])


def _share(opts: StageOptions, share: float) -> StageOptions:
    """`share` of a time budget; an epoch or step budget is kept (each net trains that many)."""
    seconds = None if opts.budget.seconds is None else opts.budget.seconds * share
    return replace(opts, budget=replace(opts.budget, seconds=seconds))  # keeps the epoch and step budgets


def train_mapping_distilled(config: ModelConfig, pairs: EncodedPairs, opts: StageOptions, gen: torch.Generator,
                            augment: LatentAugment = LatentAugment(), folds: int = 4, seen_folds: int | None = None,
                            teacher_share: float = 0.5, teacher_weight: float = 1.0,
                            block_slices: int = BLOCK_SLICES, alternate: bool = False) -> tuple[MappingNet, dict]:
    """`folds` teachers, teacher k on `seen_folds` consecutive parts from part k (default all but its own);
    each pair labelled with the mean prediction of the teachers blind to it; one student: (student, log).

    With seen_folds < folds - 1 every slice has several blind teachers: the student's label for a training
    slice is then an average, as its own prediction for an unseen slice is (it learned from all teachers)."""
    seen_folds = folds - 1 if seen_folds is None else seen_folds
    if not 1 <= seen_folds < folds:
        from psf.errors import UsageError

        raise UsageError(f"each teacher must see at least one part and not all {folds}; got {seen_folds}")
    pairs = pairs.in_memory()  # the teachers' labels are built over all pairs at once
    groups = pairs.groups if pairs.groups is not None else torch.arange(len(pairs))
    fold = fold_of_groups(groups, folds, gen, block_slices, alternate)
    total = torch.zeros_like(pairs.z_mask)
    blind_teachers = torch.zeros(len(pairs))
    log: dict = {"defense": "distill", "folds": folds, "seen_folds": seen_folds, "teacher_weight": teacher_weight, "teachers": []}
    for k in range(folds):
        seen = torch.isin(fold, torch.tensor([(k + i) % folds for i in range(seen_folds)]))
        teacher = MappingNet(config)
        log["teachers"].append(train_mapping(teacher, EncodedPairs(pairs.z_image[seen], pairs.z_mask[seen]),
                                             _share(opts, teacher_share / folds), gen, augment,
                                             name=f"server: teacher {k + 1}/{folds}"))
        total[~seen] += _predict(teacher, pairs.z_image[~seen])
        blind_teachers[~seen] += 1
    targets = teacher_weight * total / blind_teachers.view(-1, 1, 1, 1) + (1 - teacher_weight) * pairs.z_mask
    student = MappingNet(config)
    log["student"] = train_mapping(student, EncodedPairs(pairs.z_image, targets), _share(opts, 1 - teacher_share), gen,
                                   augment, name="server: mapping net (distilled)")
    if not opts.quiet:
        stderr.print(f"server: mapping net distilled from {folds} teachers; each slice labelled by the "
                     f"{folds - seen_folds} that never saw it")
    log["steps"] = log["student"]["steps"]
    return student, log
