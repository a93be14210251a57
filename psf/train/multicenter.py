"""Several centers, one mapping net: federated averaging of the client autoencoders, then one server stage.

Choice: FedAvg (McMahan et al., 2017) over `rounds` rounds rather than a lead center. Each round every
center starts from the shared autoencoders, trains them on its own views only, and sends back weights;
the new shared weights are the average weighted by each center's number of training slices. Weights
leave a center, images and masks do not (weights can leak data too: that is for psf-audit to measure,
not assumed away). Then every center encodes its own pairs with the shared encoders and the server
trains one mapping net on all centers' latents.

Budget: `--minutes` is what each participant spends, as in a real federation where the centers train
at the same time on their own machines: every center's client stages get, over all rounds, the time a
center training alone gets, and the server's stage gets the single-center server budget. Simulated here
in one process, the centers run one after another, so the run's wall time is longer than a
single-center run's (about centers x the client share). An earlier version split one budget over the
centers instead; each center then trained a third as long as alone (RESULTS.md, multi-center).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from psf.errors import UsageError
from psf.models import build_networks
from psf.pipeline.preprocess import DEFAULT_NORMALIZATION
from psf.progress import stderr
from psf.train.augment import augmented_views, view_slices
from psf.train.checkpoint import save_checkpoint
from psf.train.data import SliceSet, load_split
from psf.train.loop import Budget
from psf.train.run import TrainOptions, evaluate, load_key, server_stage, stage_options
from psf.train.stages import (
    EncodedPairs,
    StageOptions,
    Views,
    client_optimizer,
    encode_pairs,
    train_image_autoencoder,
    train_mask_autoencoder,
)

CLIENT_NETWORKS = ("image_encoder", "image_decoder", "mask_encoder", "mask_decoder")


@dataclass(frozen=True)
class Center:
    name: str
    data: Path

    @classmethod
    def parse(cls, spec: str) -> "Center":
        """NAME=DIR, as given to --center."""
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise UsageError(f"--center {spec!r}: expected NAME=DIR, e.g. --center site_a=data/center_a")
        if not Path(folder).is_dir():
            raise UsageError(f"--center {spec!r}: {folder} is not a folder")
        return cls(name, Path(folder))


def average_states(states: list[dict], weights: list[float]) -> dict:
    """Weighted average of state dicts; integer buffers (BatchNorm's batch counter) take the first's value."""
    total = sum(weights)
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(w / total * s[key] for s, w in zip(states, weights))
        else:
            out[key] = first.clone()
    return out


def _client_states(nets) -> dict:
    return {name: copy.deepcopy(getattr(nets, name).state_dict()) for name in CLIENT_NETWORKS}


def _load_client_states(nets, states: dict) -> None:
    for name in CLIENT_NETWORKS:
        getattr(nets, name).load_state_dict(states[name])


def _concat(sets: list[SliceSet]) -> SliceSet:
    positions = None if any(s.positions is None for s in sets) else np.concatenate([s.positions for s in sets])
    return SliceSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in ("images", "labels", "valid")), positions)


def run_multicenter(opts: TrainOptions, centers: list[Center], rounds: int = 4) -> dict:
    """Train on `centers`; returns metrics (pooled and per center) as stored in the checkpoint."""
    if len({c.name for c in centers}) != len(centers) or len(centers) < 2:
        raise UsageError("--center: give two or more centers with different names")
    if rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {rounds}")
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    started = time.perf_counter()
    norm, size = DEFAULT_NORMALIZATION, opts.model.image_size
    splits = {c.name: {s: load_split(c.data, s, size, norm) for s in ("train", "val", "test")} for c in centers}
    for c in centers:
        stderr.print(f"center {c.name}: {', '.join(f'{s} {len(d)}' for s, d in splits[c.name].items())} slices from {c.data}")
    views = {c.name: Views(*augmented_views(torch.from_numpy(splits[c.name]["train"].images),
                                            torch.from_numpy(splits[c.name]["train"].labels),
                                            opts.model.num_classes, opts.views, gen),
                           slices=view_slices(len(splits[c.name]["train"]), opts.views)) for c in centers}
    nets = build_networks(opts.model)
    key = load_key(opts.key, opts.model)  # one consortium key: every center keys its latents the same way
    sizes = [len(splits[c.name]["train"]) for c in centers]
    log: dict = {"rounds": []}
    # Each center keeps its own optimizer (its Adam moments) across rounds; the rounds share one
    # learning-rate schedule. (A first version restarted both every round; with a 5-minute budget its
    # centers a and b scored 0.036 and 0.022 mean Dice below training alone.)
    optimizers = {c.name: (client_optimizer(nets.image_encoder, nets.image_decoder),
                           client_optimizer(nets.mask_encoder, nets.mask_decoder)) for c in centers}
    for r in range(rounds):
        shared, returned = _client_states(nets), []
        for c in centers:
            _load_client_states(nets, shared)  # in place: the optimizers keep pointing at these tensors
            image_opt, mask_opt = optimizers[c.name]
            train_image_autoencoder(nets, views[c.name], _stage(opts, "image_ae", rounds, r), gen, image_opt)
            train_mask_autoencoder(nets, views[c.name], _stage(opts, "mask_ae", rounds, r), gen, opt=mask_opt)
            returned.append(_client_states(nets))
        averaged = {name: average_states([s[name] for s in returned], sizes) for name in CLIENT_NETWORKS}
        _load_client_states(nets, averaged)
        log["rounds"].append({"round": r + 1})
        stderr.print(f"federated round {r + 1}/{rounds}: averaged {len(centers)} centers' autoencoders (weights {sizes})")
    # Each center encodes only its own pairs; the server sees latents from all of them.
    pairs = [encode_pairs(nets, views[c.name], key=key) for c in centers]
    offsets = np.cumsum([0] + sizes[:-1])  # slice groups stay distinct across centers
    server_pairs = EncodedPairs(torch.cat([p.z_image for p in pairs]), torch.cat([p.z_mask for p in pairs]),
                                torch.cat([p.groups + int(o) for p, o in zip(pairs, offsets)]))
    stderr.print(f"server: {len(server_pairs)} encoded pairs from {len(centers)} centers")
    nets.mapping, log["mapping"] = server_stage(opts, nets.mapping, server_pairs, gen)
    nets.eval()
    metrics = {
        "val": evaluate(nets, _concat([splits[c.name]["val"] for c in centers]), opts.labels, key),
        "test": evaluate(nets, _concat([splits[c.name]["test"] for c in centers]), opts.labels, key),
        "centers": {c.name: evaluate(nets, splits[c.name]["test"], opts.labels, key) for c in centers},
    }
    training = {"options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items() if k not in ("model", "key")},
                "centers": {c.name: str(c.data) for c in centers}, "federated_rounds": rounds, "stages": log,
                "seconds": round(time.perf_counter() - started, 1)}
    save_checkpoint(opts.out, nets, list(opts.labels), norm, metrics, training, key_id=key.key_id if key else None)
    return {"metrics": metrics, "training": training}


def _stage(opts: TrainOptions, stage: str, rounds: int, r: int) -> StageOptions:
    """One center's part of a client stage in round r: 1/rounds of the stage's time or epoch budget (over
    all rounds, what the center would spend training alone), on round r's slice of the schedule."""
    base = stage_options(opts, stage)
    seconds = None if base.budget.seconds is None else base.budget.seconds / rounds
    epochs = None if base.budget.epochs is None else max(1, round(base.budget.epochs / rounds))
    return StageOptions(Budget(seconds=seconds, epochs=epochs), base.batch_size, base.lr, base.crop, base.quiet,
                        schedule=(r / rounds, (r + 1) / rounds))
