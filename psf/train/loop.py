"""One budgeted training loop for every stage: steps until the step/epoch budget (or a time cap) runs out.

The budget that decides the model counts steps or epochs, never seconds: the same command and seed give the
same model on a fast, slow or busy machine. A time cap (`--minutes`) may stop a stage early or bend its
learning-rate schedule; when it does, the stage's log says so ("time_bound") and stderr warns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from psf.progress import progress_bar, stderr
from psf.train.batches import Make, index_batches, made_batches


@dataclass(frozen=True)
class Budget:
    """Stop at `steps` optimizer steps or `epochs` passes, whichever comes first, or at the `seconds` cap
    (None: no limit). With seconds alone the stage is time-budgeted (its result depends on the machine)."""

    seconds: float | None = None
    epochs: int | None = None
    steps: int | None = None

    def __post_init__(self):
        if self.seconds is None and self.epochs is None and self.steps is None:
            raise ValueError("a budget needs steps, epochs or seconds")

    def planned_steps(self, steps_per_epoch: int) -> int | None:
        """The steps this budget runs when no time cap intervenes (None: time-budgeted only)."""
        counts = [c for c in (self.steps, None if self.epochs is None else self.epochs * steps_per_epoch) if c is not None]
        return min(counts) if counts else None


def run_loop(name: str, step: Callable, n_items: int, batch_size: int, budget: Budget, gen: torch.Generator,
             quiet: bool = False, make: Make | None = None, workers: int = 0, pin: bool = False) -> dict:
    """Call `step(batch, done)` over shuffled mini-batches; returns {"epochs", "steps", "seconds", "loss",
    "planned_steps", "time_bound"}.

    Without `make`, `batch` holds indices into the stage's data and `step` draws its own randomness from `gen`.
    With `make`, `batch` is make(indices, its own generator), made by `workers` DataLoader workers (0: in this
    process; `pin`: into pinned memory), and the result does not depend on the number of workers
    (psf.train.batches). `done` in [0, 1) is the fraction of the budget used (for learning-rate schedules):
    steps / planned steps, or the time used when that is further along (only possible under a time cap, and
    then `time_bound` is true). The reported loss is an exponential moving average.
    """
    start = time.perf_counter()
    steps_per_epoch = max(1, n_items // batch_size)
    total = budget.planned_steps(steps_per_epoch)
    feed = index_batches(n_items, batch_size, gen) if make is None else made_batches(make, n_items, batch_size, gen, workers, pin)
    ema, steps = None, 0
    state = {"time_bound": False}
    with progress_bar(quiet) as bar, contextlib.closing(feed):
        by_time = total is None
        task = bar.add_task(name, total=budget.seconds if by_time else total, unit="s of budget" if by_time else "steps")
        for batch in feed:
            loss = step(batch, _fraction(budget, start, steps, total, state))
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            steps += 1
            elapsed = time.perf_counter() - start
            bar.update(task, completed=elapsed if by_time else steps, description=f"{name} loss {ema:.4f}")
            if total is not None and steps >= total:
                return _summary(steps / steps_per_epoch, steps, start, ema, total, state["time_bound"], name)
            if budget.seconds is not None and elapsed >= budget.seconds:
                return _summary(steps / steps_per_epoch, steps, start, ema, total, total is not None, name)
    raise AssertionError("unreachable: the batches never end")


def _fraction(budget: Budget, start: float, steps: int, total: int | None, state: dict) -> float:
    by_time = (time.perf_counter() - start) / budget.seconds if budget.seconds else 0.0
    by_steps = steps / total if total else 0.0
    if total and by_time > by_steps:
        state["time_bound"] = True  # the cap, not the step count, is driving the schedule now
    return min(0.999, max(by_time, by_steps))


def cosine_lr(optimizer: torch.optim.Optimizer, base_lr: float, done: float, warmup: float = 0.05) -> None:
    """Linear warm-up, then cosine decay to 2% of `base_lr`, driven by the budget fraction `done`."""
    import math

    if done < warmup:
        lr = base_lr * (0.1 + 0.9 * done / warmup)
    else:
        lr = base_lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (done - warmup) / (1 - warmup))))
    for group in optimizer.param_groups:
        group["lr"] = lr


def _summary(epochs: float, steps: int, start: float, loss: float | None, total: int | None = None,
             time_bound: bool = False, name: str = "") -> dict:
    if time_bound:
        stderr.print(f"[yellow]warning:[/yellow] {name}: the --minutes cap shaped this stage ({steps} of {total} "
                     "planned steps, learning-rate schedule driven by the clock): this model depends on the machine's "
                     "speed; raise --minutes or drop it for the reproducible step budget", highlight=False)
    return {"epochs": round(epochs, 2), "steps": steps, "seconds": round(time.perf_counter() - start, 1),
            "loss": None if loss is None else round(float(loss), 5), "planned_steps": total, "time_bound": bool(time_bound)}
