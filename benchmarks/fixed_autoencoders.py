"""Shared by the server-stage benchmarks (latent_augment_ablation, membership_defense): a trained model's
client networks held fixed and its training views encoded once, exactly as the client sends them; and
the JSON + Markdown outputs each benchmark writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from psf.io.atomic import write_text_atomic
from psf.pipeline.preprocess import DEFAULT_NORMALIZATION
from psf.privacy.audit import Encoded, encode_split
from psf.train.checkpoint import load_checkpoint
from psf.train.data import SliceSet, load_split
from psf.train.stages import EncodedPairs, encode_pairs
from psf.train.views import Views


@dataclass
class FixedClients:
    nets: object                    # psf.models.Networks; benchmarks swap nets.mapping
    labels: tuple[str, ...]
    splits: dict[str, SliceSet]     # train / val / test
    pairs: EncodedPairs             # the training views' latents, with their slice numbers
    encoded: dict[str, Encoded]     # each split's unaugmented latents (what the attacks score)


def encode_with_fixed_clients(model: Path, data: Path, views: int = 12, clients_on_all_slices: float | None = None) -> FixedClients:
    """`clients_on_all_slices` (seconds): first retrain the client autoencoders from scratch on every slice of
    train, val and test, so that no slice is a member or a non-member of the clients' networks (a diagnostic:
    what the server's mapping net leaks by itself; test Dice is then optimistic)."""
    nets, ckpt = load_checkpoint(model)
    splits = {s: load_split(data, s, nets.config.image_size, DEFAULT_NORMALIZATION) for s in ("train", "val", "test")}
    train = splits["train"]
    gen = torch.Generator().manual_seed(0)
    if clients_on_all_slices:
        _retrain_clients(nets, splits, views, clients_on_all_slices, gen)
    made = Views(train.images, train.labels, nets.config.num_classes, views, gen)
    return FixedClients(nets, tuple(ckpt["labels"]), splits, encode_pairs(nets, made),
                        {s: encode_split(nets, splits[s]) for s in ("train", "val", "test")})


def _retrain_clients(nets, splits: dict[str, SliceSet], views: int, seconds: float, gen: torch.Generator) -> None:
    """Fresh image and mask autoencoders on all splits, psf-train's share of the time each (22 : 13)."""
    from psf.models import build_networks
    from psf.train.loop import Budget
    from psf.train.run import BUDGET_SHARES
    from psf.train.stages import StageOptions, train_image_autoencoder, train_mask_autoencoder

    fresh = build_networks(nets.config)
    nets.image_encoder, nets.image_decoder = fresh.image_encoder, fresh.image_decoder
    nets.mask_encoder, nets.mask_decoder = fresh.mask_encoder, fresh.mask_decoder
    images = np.concatenate([splits[s].images for s in ("train", "val", "test")])
    labels = np.concatenate([splits[s].labels for s in ("train", "val", "test")])
    every = Views(images, labels, nets.config.num_classes, views, gen)
    client_share = BUDGET_SHARES["image_ae"] + BUDGET_SHARES["mask_ae"]
    for train, share in ((train_image_autoencoder, BUDGET_SHARES["image_ae"]), (train_mask_autoencoder, BUDGET_SHARES["mask_ae"])):
        train(nets, every, StageOptions(Budget(seconds=seconds * share / client_share), batch_size=16,
                                        crop=nets.config.image_size // 2, quiet=True), gen)
    nets.eval()


def write_outputs(out: Path, meta: dict, rows: list[dict], table: list[str]) -> None:
    """out.json (meta + rows), out.md (the table) and run.json (provenance) beside them, each written
    atomically; the table is printed too."""
    from psf.bench.provenance import write_run_json

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.with_suffix(".json"), json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    write_text_atomic(out.with_suffix(".md"), "\n".join(table) + "\n")
    write_run_json(out.parent, seed=meta.get("seed"))
    print("\n".join(table))
