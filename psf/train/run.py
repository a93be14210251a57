"""psf-train's job: load a data set, run the three stages inside a time budget, evaluate, save model.pt."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from psf.metrics import confusion_counts, report
from psf.models import build_networks
from psf.models.config import ModelConfig
from psf.pipeline.preprocess import DEFAULT_NORMALIZATION
from psf.progress import stderr
from psf.train.augment import augmented_views, view_slices
from psf.train.checkpoint import save_checkpoint
from psf.train.data import SliceSet, load_split
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.stages import (
    StageOptions,
    Views,
    encode_pairs,
    predict_probs,
    train_image_autoencoder,
    train_mapping,
    train_mask_autoencoder,
)

# How a time budget is shared between the stages (the rest goes to encoding and evaluation).
BUDGET_SHARES = {"image_ae": 0.22, "mask_ae": 0.13, "mapping": 0.6}


@dataclass(frozen=True)
class TrainOptions:
    data: Path
    out: Path
    model: ModelConfig = field(default_factory=ModelConfig)
    minutes: float | None = 10.0
    epochs: int | None = None
    # Per-stage epoch budgets (override `epochs`): a budget that does not depend on machine load.
    stage_epochs: dict[str, int] | None = None
    views: int = 12
    latent_augment: str = "shift"  # the server's encoded-data augmentations (psf.train.latent_augment)
    key: Path | None = None  # consortium key file (psf.models.key): latents are keyed before the server stage
    membership_defense: str = "none"  # how the server trains its mapping net (psf.train.distill): none | distill
    seed: int = 0
    threads: int | None = None
    labels: tuple[str, ...] = ("other", "grey_matter", "white_matter")
    quiet: bool = False


def stage_options(opts: TrainOptions, stage: str) -> StageOptions:
    seconds = None if opts.minutes is None else opts.minutes * 60 * BUDGET_SHARES[stage]
    budget = Budget(seconds=seconds, epochs=(opts.stage_epochs or {}).get(stage, opts.epochs))
    if stage == "mapping":  # latent crops of half the grid, larger batches (the server's net is cheap per item)
        return StageOptions(budget, batch_size=32, crop=opts.model.grid // 2, quiet=opts.quiet)
    return StageOptions(budget, batch_size=16, crop=opts.model.image_size // 2, quiet=opts.quiet)


def evaluate(nets, data: SliceSet, labels: tuple[str, ...], key=None) -> dict:
    """Dice and IoU per class over the real (unpadded) pixels of a split, pipeline run in torch."""
    pred = predict_probs(nets, data.images, key=key).argmax(1)
    counts = confusion_counts(pred[data.valid], data.labels[data.valid], len(labels))
    return report(counts, list(labels))


def run_training(opts: TrainOptions) -> dict:
    """Run every stage; returns the metrics also stored in the checkpoint."""
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    gen = torch.Generator().manual_seed(opts.seed)
    started = time.perf_counter()
    norm = DEFAULT_NORMALIZATION
    size = opts.model.image_size
    splits = {s: load_split(opts.data, s, size, norm) for s in ("train", "val", "test")}
    stderr.print(f"data: {', '.join(f'{s} {len(d)} slices' for s, d in splits.items())} from {opts.data}")
    nets = build_networks(opts.model)
    key = load_key(opts.key, opts.model)
    train = splits["train"]
    views = Views(*augmented_views(torch.from_numpy(train.images), torch.from_numpy(train.labels),
                                   opts.model.num_classes, opts.views, gen), slices=view_slices(len(train), opts.views))
    log = {
        "image_ae": train_image_autoencoder(nets, views, stage_options(opts, "image_ae"), gen),
        "mask_ae": train_mask_autoencoder(nets, views, stage_options(opts, "mask_ae"), gen),
    }
    pairs = encode_pairs(nets, views, key=key)
    stderr.print(f"client: encoded {len(pairs)} pairs ({opts.views} views per slice) for the server"
                 + (f", keyed with consortium key {key.key_id}" if key else ""))
    nets.mapping, log["mapping"] = server_stage(opts, nets.mapping, pairs, gen)
    nets.eval()
    metrics = {
        "val": evaluate(nets, splits["val"], opts.labels, key),
        "test": evaluate(nets, splits["test"], opts.labels, key),
        "mask_autoencoder_test": _mask_ae_ceiling(nets, splits["test"], opts.labels),
    }
    training = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items() if k not in ("model", "key")},
        "stages": log,
        "seconds": round(time.perf_counter() - started, 1),
        "slices": {s: len(d) for s, d in splits.items()},
    }
    save_checkpoint(opts.out, nets, list(opts.labels), norm, metrics, training, key_id=key.key_id if key else None)
    return {"metrics": metrics, "training": training}


def server_stage(opts: TrainOptions, mapping: torch.nn.Module, pairs, gen: torch.Generator):
    """Train the server's mapping net on encoded pairs (`mapping` itself, or with the distill defense a
    student built fresh): (net, log)."""
    from psf.train.distill import train_mapping_distilled

    augment = LatentAugment.from_names(opts.latent_augment)
    if opts.membership_defense == "distill":
        return train_mapping_distilled(opts.model, pairs, stage_options(opts, "mapping"), gen, augment)
    return mapping, train_mapping(mapping, pairs, stage_options(opts, "mapping"), gen, augment)


def load_key(path: Path | None, model: ModelConfig):
    """The consortium key for this model's latent channels, or None."""
    if path is None:
        return None
    from psf.models.key import ConsortiumKey

    key = ConsortiumKey.load(path)
    key.check_fits(model.image_latent, model.mask_latent)
    return key


@torch.no_grad()
def _mask_ae_ceiling(nets, data: SliceSet, labels: tuple[str, ...]) -> dict:
    """Dice of decode(encode(true mask)): the best the mapping net can reach with this mask autoencoder."""
    from psf.train.augment import one_hot

    y = torch.from_numpy(data.labels)
    pred = nets.mask_decoder(nets.mask_encoder(one_hot(y, len(labels)))).argmax(1).numpy()
    return report(confusion_counts(pred[data.valid], data.labels[data.valid], len(labels)), list(labels))
