"""One budgeted training loop for every stage: steps until the epoch or time budget runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from psf.progress import progress_bar


@dataclass(frozen=True)
class Budget:
    """Stop at `seconds` of wall time or `epochs` passes, whichever comes first (None: no limit)."""

    seconds: float | None = None
    epochs: int | None = None

    def __post_init__(self):
        if self.seconds is None and self.epochs is None:
            raise ValueError("a budget needs seconds or epochs")


def run_loop(name: str, step: Callable[[torch.Tensor, float], float], n_items: int, batch_size: int, budget: Budget,
             gen: torch.Generator, quiet: bool = False) -> dict:
    """Call `step(index_batch, done)` over shuffled mini-batches; returns {"epochs", "steps", "seconds", "loss"}.

    `index_batch` holds indices into the stage's data; `done` in [0, 1) is the fraction of the budget
    used (for learning-rate schedules). The reported loss is an exponential moving average.
    """
    start = time.perf_counter()
    steps_per_epoch = max(1, n_items // batch_size)
    total = None
    if budget.epochs is not None:
        total = budget.epochs * steps_per_epoch
    ema, steps, epochs = None, 0, 0
    with progress_bar(quiet) as bar:
        by_time = budget.seconds is not None
        task = bar.add_task(name, total=budget.seconds if by_time else total, unit="s of budget" if by_time else "steps")
        while True:
            order = torch.randperm(n_items, generator=gen)
            for b in range(steps_per_epoch):
                loss = step(order[b * batch_size : (b + 1) * batch_size], _fraction(budget, start, steps, total))
                ema = loss if ema is None else 0.95 * ema + 0.05 * loss
                steps += 1
                elapsed = time.perf_counter() - start
                bar.update(task, completed=elapsed if budget.seconds is not None else steps,
                           description=f"{name} loss {ema:.4f}")
                if budget.seconds is not None and elapsed >= budget.seconds:
                    return _summary(epochs + (b + 1) / steps_per_epoch, steps, start, ema)
            epochs += 1
            if budget.epochs is not None and epochs >= budget.epochs:
                return _summary(epochs, steps, start, ema)


def _fraction(budget: Budget, start: float, steps: int, total: int | None) -> float:
    by_time = (time.perf_counter() - start) / budget.seconds if budget.seconds else 0.0
    by_steps = steps / total if total else 0.0
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


def _summary(epochs: float, steps: int, start: float, loss: float | None) -> dict:
    return {"epochs": round(epochs, 2), "steps": steps, "seconds": round(time.perf_counter() - start, 1),
            "loss": None if loss is None else round(float(loss), 5)}
