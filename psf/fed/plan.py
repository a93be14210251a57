"""The training plan every participant receives: budgets, model sizes, augmentation, defense, rounds.

It travels in each task's meta from the hub to the hospitals (hyper-parameters only: no paths, no
data, no keys) and becomes psf.train's TrainOptions on each side, so the hub's server stage and the
hospitals' client stages are exactly psf-train's.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from psf.models.config import ModelConfig
from psf.train.run import TrainOptions, stage_options
from psf.train.stages import StageOptions

# TrainOptions fields that describe the training (the rest are per-machine: data, out, key, threads).
PLAN_FIELDS = ("minutes", "epochs", "stage_epochs", "stage_steps", "views", "latent_augment", "membership_defense",
               "epsilon", "delta", "max_grad_norm", "seed", "labels", "quiet", "map_crop")


AGGREGATORS = ("he", "hospitals")  # CKKS sums at the hub (psf.fed.he) | hospitals average AES-sealed updates (psf.fed.sealed)


def make_plan(opts: TrainOptions, rounds: int, aggregator: str = "he") -> dict:
    """JSON-able plan from psf-train's options (a TrainOptions with or without data/out)."""
    from psf.errors import UsageError

    if aggregator not in AGGREGATORS:
        raise UsageError(f"--aggregator {aggregator!r}: choose he (encrypted sums at the hub) or hospitals (explicit fallback)")
    plan = {k: getattr(opts, k) for k in PLAN_FIELDS if hasattr(opts, k)}
    plan["labels"] = list(plan.get("labels", ()))
    plan["model"] = opts.model.to_dict()
    plan["rounds"] = int(rounds)
    plan["aggregator"] = aggregator
    return plan


def train_options(plan: dict, data: Path = Path("."), out: Path = Path("model.pt"), key: Path | None = None) -> TrainOptions:
    known = {f.name for f in fields(TrainOptions)}
    kwargs = {k: v for k, v in plan.items() if k in known and k in PLAN_FIELDS}
    if "labels" in kwargs:
        kwargs["labels"] = tuple(kwargs["labels"])
    return TrainOptions(data=Path(data), out=Path(out), model=ModelConfig.from_dict(plan["model"]), key=key, **kwargs)


def round_stage(opts: TrainOptions, stage: str, rounds: int, r: int) -> StageOptions:
    """One hospital's part of a client stage in round r: 1/rounds of the stage's budget (so over all
    rounds each hospital spends what it would training alone), on round r's slice of one schedule."""
    base = stage_options(opts, stage)
    b = base.budget
    scaled = {}
    for name in ("seconds", "epochs", "steps"):
        value = getattr(b, name, None)
        if value is not None:
            scaled[name] = value / rounds if name == "seconds" else max(1, round(value / rounds))
    return replace(base, budget=replace(b, **scaled), schedule=(r / rounds, (r + 1) / rounds))




def fit_plan(plan: dict, data: Path) -> dict:
    """The plan with the labels and the model's channels and classes of a data set (dataset.json), as
    psf-train sizes a model; `psf fed sim|poc` take them from the first hospital, and every hospital
    checks its own data against them."""
    from psf.train.data import dataset_info
    from psf.train.run import with_dataset

    fitted = with_dataset(train_options(plan, data), dataset_info(data))
    return {**plan, "labels": list(fitted.labels), "model": fitted.model.to_dict()}
