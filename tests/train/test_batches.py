"""Batches made by DataLoader workers: the same batches, and the same model, with any number of workers."""

from __future__ import annotations

import pytest
import torch

from psf.train.batches import auto_workers, made_batches
from tests.train.test_budget import _train
from tests.train.tiny import tiny_dataset


def _make(idx: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws from its generator and from the global RNG (as torch.distributions does)."""
    drawn = torch.randn(len(idx), 3, generator=g)
    beta = torch.distributions.Beta(0.4, 0.4).sample((len(idx),))
    return idx.float()[:, None] + drawn, beta


def _first(workers: int, n: int = 7) -> tuple[list, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    feed = made_batches(_make, 20, 4, gen, workers=workers)
    got = [next(feed) for _ in range(n)]
    feed.close()
    return got, torch.randint(0, 1000, (3,), generator=gen)


def test_batches_do_not_depend_on_the_number_of_workers_and_move_the_run_generator_once():
    alone, after_alone = _first(0)
    forked, after_forked = _first(2)
    for (x0, b0), (x2, b2) in zip(alone, forked):
        assert torch.equal(x0, x2) and torch.equal(b0, b2)
    assert torch.equal(after_alone, after_forked)  # the workers' read-ahead did not touch the run's generator
    # 5 batches of 4 per epoch, every index once per epoch, and the epochs differ in order
    first_epoch = torch.cat([x.round().long()[:, 0] for x, _ in alone[:5]]).sort().values
    assert not torch.equal(alone[0][0], alone[5][0])
    assert (first_epoch - torch.arange(20)).abs().max() <= 4  # randn moved each value by a few units at most
    # exactly one draw, made when the stage starts (not when the first batch is read)
    gen, twin = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    made_batches(_make, 20, 4, gen).close()
    torch.randint(0, 2**62, (1,), generator=twin)
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=twin))
    global_state = torch.get_rng_state()
    _first(0)
    assert torch.equal(global_state, torch.get_rng_state())  # making batches leaves the global RNG as it was


def _intensity_batch(idx: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor]:
    """psf's client-stage batch at the default size: 16 crops of 128 x 128, intensity-augmented (a pow torch
    splits across threads)."""
    from psf.train.augment import intensity

    return (intensity(torch.rand(len(idx), 1, 128, 128, generator=g), g),)


def test_batches_made_in_the_loop_match_a_workers_whatever_the_threads():
    """A worker runs on one thread; the loop's process may run on many. On this CPU, 5 threads round a few
    elements of pow differently from 1 (the split points): the batch must not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(5)
    try:
        alone = [b for b, _ in zip(made_batches(_intensity_batch, 64, 16, torch.Generator().manual_seed(1)), range(6))]
    finally:
        torch.set_num_threads(threads)
    forked = [b for b, _ in zip(made_batches(_intensity_batch, 64, 16, torch.Generator().manual_seed(1), workers=1), range(6))]
    for (a,), (f,) in zip(alone, forked):
        assert torch.equal(a, f)


def test_a_model_trained_with_workers_is_identical_to_one_trained_without(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    _train(data, tmp_path / "alone.pt", workers=0)
    log = _train(data, tmp_path / "forked.pt", workers=2)
    assert log["training"]["options"]["workers"] == 2
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("alone", "forked"))
    for net, state in a["state_dicts"].items():
        for name, tensor in state.items():
            assert torch.equal(tensor, b["state_dicts"][net][name]), f"{net}.{name} differs"


def test_workers_default_to_none_on_a_cpu_and_a_negative_count_is_refused():
    from tests.conftest import run_cli

    assert auto_workers("cpu") == 0
    assert 1 <= auto_workers("cuda:0") <= 4
    bad = run_cli("train", "nowhere", "--workers", "-1")
    assert bad.returncode == 1 and "--workers -1" in bad.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_batches_for_a_gpu_arrive_in_pinned_memory():
    feed = made_batches(_make, 20, 4, torch.Generator().manual_seed(0), workers=1, pin=True)
    x, beta = next(feed)
    feed.close()
    assert x.is_pinned() and beta.is_pinned()
