"""Differentially private training of the server's mapping net: DP-SGD over slice groups (Opacus).

The membership defense `distill` (psf.train.distill) blunts the attacks psf-audit knows; this one gives
a bound that holds against any attack: the mapping net is (epsilon, delta)-differentially private with
respect to one *unit* of its training data.

Unit of privacy: one training slice, i.e. all the pairs `EncodedPairs.groups` gives one number (the
client's augmented views of that slice: 12 by default). With `groups` None each pair is its own unit.
Adding or removing one slice with all its views changes the mapping net's distribution by at most
(epsilon, delta). A patient contributes several slices: by group privacy a scan of k slices is covered
at (k epsilon, k e^((k-1) epsilon) delta), which is no usable bound for many slices at epsilon 8; a
per-patient bound needs scan ids on the server, which `EncodedPairs` does not carry.

What is covered: the mapping net (what the server holds and serves), given the client's encoders. The
client networks (encoder, decoders) are trained on the same slices without DP; they stay with the
client. The latent augmentations act on one pair at a time and draw no information from the data, so
they are free; `mix` (blending two slices' pairs) would not be, and is refused.

One step (Abadi et al., 2016, with a group of views as the unit, as in user-level DP, McMahan et al., 2018):
1. Poisson sampling: each slice group joins the batch with probability q = group_batch / groups.
2. Per-view gradients from Opacus' GradSampleModule; a group's gradient is the mean over its views.
3. Each group's gradient clipped to L2 norm C (`max_grad_norm`); the sum plus Gaussian noise of std
   sigma x C, divided by the expected group count q x groups (a public constant, as in Opacus).
4. AdamW on that noisy gradient, and a running average of the weights, which is what is released
   (both post-processing: no further privacy cost).
sigma is calibrated before training (Opacus' get_noise_multiplier, PRV accountant by default) for the
planned number of steps, as many as the undefended stage would take; the accountant then reports the
epsilon actually spent (<= the target: a time budget that ends early spends less). BatchNorm mixes the
examples of a batch, so the net must use GroupNorm (ModelConfig.map_norm = "group"); Opacus' validator
checks that.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from psf.errors import MissingDependency, UsageError
from psf.progress import progress_bar, stderr
from psf.train.latent_augment import LatentAugment
from psf.train.loop import cosine_lr
from psf.train.stages import EncodedPairs, StageOptions


@dataclass(frozen=True)
class DpOptions:
    """epsilon: the target (inf: clip-free, noise-free training with the same sampling: a control);
    delta: None -> 1 / number of units; group_batch: expected slice groups per step; views_per_group:
    views of a sampled group used in its step (None: all of them); accountant: "prv" (tighter) or "rdp";
    ema: decay of the weight average that is released instead of the last iterate (None: the last).

    The defaults are the best measured on the 50-subject game (benchmarks/results/2026-11-30-dp): 48 slices of 4
    views per step cost 0.074 Dice at epsilon 8 where 16 slices of 12 views cost 0.086 at the same steps and
    compute; clip 0.1 beat 1.0 (0.813 against 0.648); the PRV accountant (about 10 % less noise than RDP for the
    same epsilon) with the weight average added a little (0.853 against 0.851). With them, epsilon 8 cost 0.011
    Dice on 480 training slices (2026-11-30-dp-480-slices)."""

    epsilon: float | None
    delta: float | None = None
    max_grad_norm: float = 0.1
    group_batch: int = 48
    views_per_group: int | None = 4
    accountant: str = "prv"
    ema: float | None = 0.99

    def check(self) -> None:
        if self.epsilon is None:
            raise UsageError("--membership-defense dp needs --epsilon E (the privacy target, e.g. 8; inf: no guarantee)")
        if not self.epsilon > 0:
            raise UsageError(f"--epsilon must be > 0, got {self.epsilon}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise UsageError(f"--delta must be in (0, 1), got {self.delta}")
        if not self.max_grad_norm > 0:
            raise UsageError(f"--max-grad-norm must be > 0, got {self.max_grad_norm}")
        if self.group_batch < 1 or (self.views_per_group is not None and self.views_per_group < 1):
            raise UsageError("group_batch and views_per_group must be >= 1")
        if self.accountant not in ("rdp", "prv"):
            raise UsageError(f"accountant {self.accountant!r}: choose rdp or prv")
        if self.ema is not None and not 0 < self.ema < 1:
            raise UsageError(f"ema must be in (0, 1), got {self.ema}")


def require_opacus():
    try:
        import opacus  # noqa: F401
    except ImportError as exc:
        raise MissingDependency("Opacus (differentially private training)", "dp") from exc
    return opacus


def check_dp_ready(mapping: torch.nn.Module) -> None:
    """Opacus' validator: refuses BatchNorm (and other cross-example layers) with a fix to apply."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(mapping, strict=False)
    if errors:
        kinds = sorted({str(e).split(" ")[0] for e in errors})
        raise UsageError(f"the mapping net cannot be trained with DP (it has {', '.join(kinds)} layers, which mix a batch's "
                         "examples); build it with "
                         "ModelConfig(map_norm='group') (psf-train does so with --membership-defense dp)")


def train_mapping_dp(mapping: torch.nn.Module, pairs: EncodedPairs, opts: StageOptions, gen: torch.Generator,
                     augment: LatentAugment, dp: DpOptions, name: str = "server: mapping net (DP)") -> dict:
    """Train `mapping` in place with DP-SGD over slice groups; returns the stage log with the privacy spent."""
    require_opacus()
    from opacus import GradSampleModule
    from opacus.accountants.utils import create_accountant

    dp.check()
    if not isinstance(pairs, EncodedPairs):
        raise TypeError("the server stage trains on EncodedPairs (latents) only")
    check_dp_ready(mapping)
    if augment.mix:  # a mixed view carries another slice's latents: one slice would reach two groups' gradients
        raise UsageError("the latent augmentation 'mix' blends pairs of different slices, which breaks the per-slice "
                         "DP bound; drop mix from --latent-augment with --membership-defense dp")
    members = _group_members(pairs)
    units = len(members)
    delta = dp.delta if dp.delta is not None else 1.0 / units
    rate = min(1.0, dp.group_batch / units)
    mapping.train()
    for module in mapping.modules():  # Opacus' backward hooks cannot see through an in-place activation
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    model = GradSampleModule(mapping, batch_first=True, loss_reduction="sum")
    opt = torch.optim.AdamW(mapping.parameters(), lr=opts.lr, weight_decay=1e-4)
    planned = _planned_steps(opts, len(pairs),
                             lambda: _step_seconds(model, pairs, members, rate, opts, gen, augment, dp))
    sigma = _noise_multiplier(dp.epsilon, delta, rate, planned, dp.accountant)
    accountant = create_accountant(dp.accountant)
    start, steps, ema, clipped, seen, all_norms = time.perf_counter(), 0, None, 0, 0, []
    average = _WeightAverage(mapping, dp.ema)
    with progress_bar(opts.quiet) as bar:
        task = bar.add_task(name, total=planned, unit="steps")
        while steps < planned:
            cosine_lr(opt, opts.lr, opts.progress(steps / planned))
            loss, norms = _private_step(model, opt, pairs, members, rate, opts, gen, augment, dp, sigma)
            if math.isfinite(sigma) and sigma > 0:
                accountant.step(noise_multiplier=sigma, sample_rate=rate)
            steps += 1
            average.update(steps)
            clipped += int((norms > dp.max_grad_norm).sum())
            all_norms.append(norms)
            seen += len(norms)
            if loss is not None:
                ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            bar.update(task, completed=steps, description=f"{name} loss {ema or 0:.4f}")
            if opts.budget.seconds is not None and time.perf_counter() - start >= opts.budget.seconds:
                break
    model._close()  # removes Opacus' hooks: `mapping` is a plain module again (export, audit)
    average.apply()
    spent = _spent_epsilon(accountant, delta, sigma, steps)
    log = {"defense": "dp", "unit": "slice" if pairs.groups is not None else "pair", "units": units,
           "target_epsilon": dp.epsilon, "epsilon": spent, "delta": delta, "noise_multiplier": _round(sigma),
           "max_grad_norm": dp.max_grad_norm, "sample_rate": round(rate, 6), "expected_groups_per_step": dp.group_batch,
           "views_per_group": dp.views_per_group, "accountant": dp.accountant, "ema": dp.ema, "planned_steps": planned, "steps": steps,
           "epochs": round(steps * rate, 2), "time_bound": steps < planned, "clipped_share": round(clipped / max(seen, 1), 3),
           "seconds": round(time.perf_counter() - start, 1), "loss": None if ema is None else round(float(ema), 5)}
    if not math.isfinite(dp.epsilon) and seen:  # the control run (no guarantee to protect): where to put the clip
        log["group_grad_norm_quantiles"] = {f"q{q}": _round(torch.quantile(torch.cat(all_norms), q / 100))
                                            for q in (10, 25, 50, 75, 90)}
    if not opts.quiet:
        stderr.print(f"server: DP-SGD over {units} {log['unit']} units, {steps} steps, noise multiplier {log['noise_multiplier']}, "
                     f"clip {dp.max_grad_norm}: epsilon {spent} at delta {delta:.3g}")
    return log


class _WeightAverage:
    """An exponential moving average of a module's floating-point parameters and buffers, warmed up so that
    early (random) iterates fade fast: decay min(d, (1 + t) / (10 + t)) at step t."""

    def __init__(self, module: torch.nn.Module, decay: float | None):
        self.decay = decay
        self.tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()]
        self.average = [t.detach().clone() for t in self.tensors] if decay else []

    @torch.no_grad()
    def update(self, step: int) -> None:
        if not self.decay:
            return
        d = min(self.decay, (1 + step) / (10 + step))
        for a, t in zip(self.average, self.tensors):
            a.mul_(d).add_(t.detach(), alpha=1 - d)

    @torch.no_grad()
    def apply(self) -> None:
        for a, t in zip(self.average, self.tensors):
            t.copy_(a)


def _group_members(pairs: EncodedPairs) -> list[torch.Tensor]:
    """Pair indices of each unit (one slice's views, or each pair alone)."""
    if pairs.groups is None:
        return list(torch.arange(len(pairs)).view(-1, 1))
    order = torch.argsort(pairs.groups, stable=True)
    counts = torch.unique_consecutive(pairs.groups[order], return_counts=True)[1]
    return list(torch.split(order, counts.tolist()))


def _planned_steps(opts: StageOptions, pairs: int, time_one_step) -> int:
    """As many optimizer steps as the undefended stage takes under the same budget (its step budget, or its
    epochs over the pairs at `opts.batch_size`), each on about `group_batch` slices: more compute per step, the
    same number of updates. (Matching the undefended run's epochs instead leaves DP about 60 large steps on the
    50-subject game, and even without clipping or noise that cost 0.12 Dice.) A time-only budget becomes steps
    with the timing of one step (a dry run whose update is thrown away)."""
    planned = opts.budget.planned_steps(max(1, pairs // (opts.batch_size * opts.world[1])))  # as run_loop counts
    if planned is not None:
        return max(1, planned)
    return max(1, int(opts.budget.seconds / max(time_one_step(), 1e-3)))


def _step_seconds(model, pairs, members, rate, opts, gen, augment, dp) -> float:
    """Seconds of one step on the real data; nothing is applied (the gradients are dropped)."""
    state = gen.get_state()
    started = time.perf_counter()
    _private_step(model, None, pairs, members, rate, opts, gen, augment, dp, sigma=0.0)
    gen.set_state(state)
    return time.perf_counter() - started


def _private_step(model, opt, pairs: EncodedPairs, members: list[torch.Tensor], rate: float, opts: StageOptions,
                  gen: torch.Generator, augment: LatentAugment, dp: DpOptions, sigma: float):
    """One DP-SGD step (opt None: compute only); returns (mean view loss or None, the groups' gradient norms)."""
    chosen = torch.nonzero(torch.rand(len(members), generator=gen) < rate).flatten()
    params = [p for p in model.parameters() if p.requires_grad]
    summed = [torch.zeros_like(p) for p in params]
    loss_value, norms = None, torch.zeros(0)
    if len(chosen):
        idx, owner = _views_of(chosen, members, dp.views_per_group, gen)
        z_x, z_y = augment(*pairs.take(idx), gen, opts.crop)
        grads, loss_value = group_gradients(model, z_x, z_y, owner, len(chosen))
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        clip = math.isfinite(dp.epsilon)  # epsilon inf: the control run, same sampling, no clipping, no noise
        scale = (dp.max_grad_norm / (norms + 1e-6)).clamp(max=1.0) if clip else torch.ones_like(norms)
        norms = norms.cpu()
        summed = [torch.einsum("n,n...->...", scale, g) for g in grads]
    if opt is None:
        return loss_value, norms
    expected = rate * len(members)
    for p, s in zip(params, summed):
        noise = sigma * dp.max_grad_norm * torch.randn(p.shape, generator=gen).to(p.device) if sigma > 0 else 0.0
        p.grad = (s + noise) / expected
    opt.step()
    return loss_value, norms


def _views_of(chosen: torch.Tensor, members: list[torch.Tensor], per_group: int | None, gen: torch.Generator):
    """(pair indices, their slot in `chosen`): every view of each chosen group, or `per_group` random ones."""
    idx, owner = [], []
    for slot, g in enumerate(chosen.tolist()):
        views = members[g]
        if per_group is not None and len(views) > per_group:
            views = views[torch.randperm(len(views), generator=gen)[:per_group]]
        idx.append(views)
        owner.append(torch.full((len(views),), slot))
    return torch.cat(idx), torch.cat(owner)


def group_gradients(model, z_x: torch.Tensor, z_y: torch.Tensor, owner: torch.Tensor, groups: int):
    """Per-group gradients of the mean MSE over each group's views: one (groups, *p.shape) tensor per
    parameter of `model` (an Opacus GradSampleModule), and the mean view loss. `owner[i]`: view i's group."""
    owner = owner.to(z_x.device)
    sizes = torch.bincount(owner, minlength=groups).float()
    per_view = F.mse_loss(model(z_x), z_y, reduction="none").flatten(1).mean(1)
    model.zero_grad(set_to_none=True)
    with warnings.catch_warnings():  # the inputs need no gradient; Opacus' hooks fire on the outputs, as intended
        warnings.simplefilter("ignore", UserWarning)
        (per_view / sizes[owner]).sum().backward()  # grad_sample[i]: view i's share of its group's mean
    grads = [torch.zeros((groups, *p.shape), dtype=p.dtype, device=p.device).index_add_(0, owner, p.grad_sample)
             for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)  # also drops the grad samples
    return grads, float(per_view.detach().mean())


def _noise_multiplier(epsilon: float, delta: float, rate: float, steps: int, accountant: str) -> float:
    if not math.isfinite(epsilon):
        return 0.0
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=rate, steps=steps,
                                      accountant=accountant, epsilon_tolerance=0.01))


def _spent_epsilon(accountant, delta: float, sigma: float, steps: int) -> float | None:
    """The accountant's epsilon after the steps taken (None: no noise, no guarantee)."""
    if not (math.isfinite(sigma) and sigma > 0) or steps == 0:
        return None
    return round(float(accountant.get_epsilon(delta=delta)), 3)


def _round(x: float) -> float:
    return round(float(x), 4)


def privacy_summary(training: dict | None) -> dict | None:
    """The DP facts of a checkpoint's training log (model.pt / model.json), for psf-audit and psf.json;
    None when the mapping net was not trained with DP."""
    mapping = ((training or {}).get("stages") or {}).get("mapping") or {}
    if mapping.get("defense") != "dp":
        return None
    return {k: mapping.get(k) for k in ("epsilon", "delta", "unit", "units", "target_epsilon", "noise_multiplier",
                                        "max_grad_norm", "sample_rate", "steps", "accountant")}
