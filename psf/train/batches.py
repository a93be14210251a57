"""Training batches, made apart from the training step: in the loop's own process on a CPU run, by DataLoader
workers into pinned memory beside a GPU.

A batch is a pure function of its indices and its own seed. Indices and seeds are drawn in the loop's process
from a generator seeded once per stage from the run's generator, so one seed gives the same batches, and the
same model, with any number of workers; and the run's generator moves by one draw per stage however far the
workers read ahead.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

# make(indices, generator) -> the batch's tensors, drawing every random number from `generator`.
Make = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, ...]]

MAX_AUTO_WORKERS = 4


def auto_workers(device: str) -> int:
    """--workers auto: none on a CPU, where the step needs every core and a batch costs 0.1-0.2 ms against
    about 40 ms per step; beside a GPU up to MAX_AUTO_WORKERS, leaving one core to each torchrun process on
    this node."""
    if not str(device).startswith("cuda"):
        return 0
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(MAX_AUTO_WORKERS, (os.cpu_count() or 2) // processes - 1))


def made_batches(make: Make, n_items: int, batch_size: int, gen: torch.Generator, workers: int = 0,
                 pin: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless batches: epoch after epoch of shuffled index batches (a last partial batch is dropped), each
    made by `make` with its own seed. `pin`: into page-locked memory, so the copy to the GPU can overlap."""
    schedule = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
    loader = DataLoader(_Batches(make), sampler=_jobs(n_items, batch_size, schedule), batch_size=None,
                        num_workers=workers, pin_memory=pin, prefetch_factor=2 if workers else None,
                        multiprocessing_context=_fork() if workers else None,
                        generator=torch.Generator().manual_seed(0))  # its workers' base seed; not the global RNG's
    return _drain(loader)


def _drain(loader: DataLoader) -> Iterator[tuple[torch.Tensor, ...]]:
    feed = iter(loader)
    try:
        yield from feed
    finally:
        del feed  # closing this generator stops the workers now, not when the garbage collector gets to them


class _Batches(Dataset):
    """Job (indices, seed) -> make(indices, Generator(seed)), on one thread as in a DataLoader worker: torch
    splits a large elementwise op (intensity's pow) across threads, and the split points can round differently.
    The CPU's global RNG is seeded from the job too, and restored after, so a make that draws from it
    (torch.distributions) still gives the same batch anywhere; the CUDA generators are left alone."""

    def __init__(self, make: Make):
        self.make = make

    def __getitem__(self, job: tuple[torch.Tensor, int]) -> tuple[torch.Tensor, ...]:
        idx, seed = job
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(seed)
                return self.make(idx, torch.Generator().manual_seed(seed))
        finally:
            torch.set_num_threads(threads)


def index_batches(n_items: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Epoch after epoch of shuffled index batches from `gen` (a last partial batch is dropped)."""
    per_epoch = max(1, n_items // batch_size)
    while True:
        order = torch.randperm(n_items, generator=gen)
        for b in range(per_epoch):
            yield order[b * batch_size : (b + 1) * batch_size]


def _jobs(n_items: int, batch_size: int, schedule: torch.Generator) -> Iterator[tuple[torch.Tensor, int]]:
    for idx in index_batches(n_items, batch_size, schedule):
        yield idx, int(torch.randint(0, 2**62, (1,), generator=schedule))


def _fork():
    """Workers are forked: they share the views and latents (arrays or memory-mapped row files) instead of
    receiving pickled copies. Where fork does not exist (Windows), workers cannot be used."""
    if "fork" not in multiprocessing.get_all_start_methods():
        from psf.errors import UsageError

        raise UsageError("--workers needs the 'fork' start method, which this platform lacks; use --workers 0")
    return multiprocessing.get_context("fork")
