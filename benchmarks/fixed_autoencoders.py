"""Shared by the server-stage benchmarks (latent_augment_ablation, membership_defense): a trained model's
client networks held fixed and its training views encoded once, exactly as the client sends them; and
the JSON + Markdown outputs each benchmark writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from psf.io.atomic import write_text_atomic
from psf.pipeline.preprocess import DEFAULT_NORMALIZATION
from psf.privacy.audit import Encoded, encode_split
from psf.train.augment import augmented_views, view_slices
from psf.train.checkpoint import load_checkpoint
from psf.train.data import SliceSet, load_split
from psf.train.stages import EncodedPairs, Views, encode_pairs


@dataclass
class FixedClients:
    nets: object                    # psf.models.Networks; benchmarks swap nets.mapping
    labels: tuple[str, ...]
    splits: dict[str, SliceSet]     # train / val / test
    pairs: EncodedPairs             # the training views' latents, with their slice numbers
    encoded: dict[str, Encoded]     # each split's unaugmented latents (what the attacks score)


def encode_with_fixed_clients(model: Path, data: Path, views: int = 12) -> FixedClients:
    nets, ckpt = load_checkpoint(model)
    splits = {s: load_split(data, s, nets.config.image_size, DEFAULT_NORMALIZATION) for s in ("train", "val", "test")}
    train = splits["train"]
    made = Views(*augmented_views(torch.from_numpy(train.images), torch.from_numpy(train.labels), nets.config.num_classes,
                                  views, torch.Generator().manual_seed(0)), slices=view_slices(len(train), views))
    return FixedClients(nets, tuple(ckpt["labels"]), splits, encode_pairs(nets, made),
                        {s: encode_split(nets, splits[s]) for s in ("train", "val", "test")})


def write_outputs(out: Path, meta: dict, rows: list[dict], table: list[str]) -> None:
    """out.json (meta + rows) and out.md (the table), each written atomically; the table is printed too."""
    write_text_atomic(out.with_suffix(".json"), json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    write_text_atomic(out.with_suffix(".md"), "\n".join(table) + "\n")
    print("\n".join(table))
