"""psf-train's job: load a data set, run the three stages on a step budget, evaluate, save model.pt.

The default budget counts optimizer steps per stage (DEFAULT_STAGE_STEPS), so one command and seed give
one model whatever the machine's speed or load; `--minutes` is only a cap (psf.train.loop says when it bit).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from psf.models import build_networks
from psf.models.config import ModelConfig
from psf.progress import stderr
from psf.train.batches import auto_workers
from psf.train.cache import cached_split, scratch_folder
from psf.train.checkpoint import save_checkpoint
from psf.train.evaluation import case_evaluation, evaluate, mask_ae_ceiling
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.stages import (
    StageOptions,
    encode_pairs,
    train_image_autoencoder,
    train_mapping,
    train_mask_autoencoder,
)
from psf.train.views import Views

# How a time cap is shared between the stages (the rest goes to encoding and evaluation).
BUDGET_SHARES = {"image_ae": 0.22, "mask_ae": 0.13, "mapping": 0.6}
# The default budget: optimizer steps per stage. On the demo data (117 slices x 12 views) these are what a quiet
# 2-core host did in the former 9-minute wall-clock budget (about 16, 12 and 8 steps/s per stage), i.e. ~22,
# ~10 and ~60 epochs; benchmarks/RESULTS.md has the runs. Steps, not epochs, so a large data set does not
# multiply the cost; give --epochs or --steps for more.
DEFAULT_STAGE_STEPS = {"image_ae": 2000, "mask_ae": 900, "mapping": 2600}
# --map-crop: (batch, window side as a share of the latent grid). Both see the same latent cells per step; "full"
# gives the mapping net the whole slice as context (benchmarks/results/2026-11-30-map-crop: MR 4 labels +0.018 at
# width 32; the demo -0.002 on test, +0.006 on val), "half" adds shifted windows.
MAP_CROPS = {"half": (32, 0.5), "full": (8, 1.0)}
# Below this mean Dice of decode(encode(true mask)) on the val split no mapping net can give a usable model.
MIN_CEILING = 0.90


@dataclass(frozen=True)
class TrainOptions:
    data: Path
    out: Path
    model: ModelConfig = field(default_factory=ModelConfig)
    minutes: float | None = None  # a wall-clock cap over all stages (shared by BUDGET_SHARES); None: no cap
    epochs: int | None = None
    # Per-stage epoch budgets (override `epochs`): a budget that does not depend on machine load.
    stage_epochs: dict[str, int] | None = None
    views: int = 12
    latent_augment: str = "shift"  # the server's encoded-data augmentations (psf.train.latent_augment)
    key: Path | None = None  # consortium key file (psf.models.key): latents are keyed before the server stage
    membership_defense: str = "none"  # how the server trains its mapping net (psf.train.distill): none | distill | dp
    # --membership-defense dp (psf.train.dp): target epsilon, delta (None: 1 / training slices), clipping norm.
    epsilon: float | None = None
    delta: float | None = None
    max_grad_norm: float = 0.1
    seed: int = 0
    threads: int | None = None
    labels: tuple[str, ...] = ("other", "grey_matter", "white_matter")  # replaced by the data set's (dataset.json)
    quiet: bool = False
    # Per-stage step budgets (used where no epoch budget is given; missing stages: DEFAULT_STAGE_STEPS).
    stage_steps: dict[str, int] | None = None
    # Refuse (exit non-zero after writing) a model whose mask autoencoder ceiling on val is below this; 0: off.
    min_ceiling: float = MIN_CEILING
    device: str = "cpu"  # "auto", "cpu", "cuda" or "cuda:N" (psf.train.device.resolve_device)
    world: tuple[int, int] = (0, 1)  # (rank, processes) under torchrun (psf.train.distributed); set by run_training
    cache: Path | None = None  # where preprocessed slices are kept (psf.train.cache.cache_root; None: its default)
    workers: int | None = None  # DataLoader workers per process (psf.train.batches; None: auto_workers(device))
    map_crop: str = "half"  # the mapping net's training windows (MAP_CROPS)


def stage_options(opts: TrainOptions, stage: str) -> StageOptions:
    budget = stage_budget(opts, stage)
    workers = auto_workers(opts.device) if opts.workers is None else opts.workers
    if stage == "mapping":  # latent windows, larger batches (the server's net is cheap per item)
        batch, share = MAP_CROPS[opts.map_crop]
        return StageOptions(budget, batch_size=batch, crop=round(opts.model.grid * share), quiet=opts.quiet,
                            device=opts.device, world=opts.world, workers=workers)
    return StageOptions(budget, batch_size=16, crop=opts.model.image_size // 2, quiet=opts.quiet, device=opts.device,
                        world=opts.world, workers=workers)


def parse_steps(text: str | None) -> dict[str, int] | None:
    """--steps: "N" (every stage, and the U-Net baseline) or "image_ae=N,mask_ae=N,mapping=N,unet=N" (a subset)."""
    from psf.errors import UsageError

    if text is None:
        return None
    stages = (*DEFAULT_STAGE_STEPS, "unet")
    try:
        if "=" not in text:
            steps = {stage: int(text) for stage in stages}
        else:
            steps = {}
            for part in text.split(","):
                name, value = part.split("=")
                if name.strip() not in stages:
                    raise ValueError(f"unknown stage {name.strip()!r}")
                steps[name.strip()] = int(value)
    except ValueError as exc:
        raise UsageError(f"--steps {text!r}: {exc}; give N or e.g. image_ae=2000,mask_ae=900,mapping=2600") from None
    if any(v < 1 for v in steps.values()):
        raise UsageError(f"--steps {text!r}: every count must be >= 1")
    return steps


def stage_budget(opts: TrainOptions, stage: str) -> Budget:
    """The stage's budget: its epochs (stage_epochs, else epochs) or else its steps (stage_steps, else the
    default), capped by its share of `minutes`."""
    seconds = None if opts.minutes is None else opts.minutes * 60 * BUDGET_SHARES[stage]
    epochs = (opts.stage_epochs or {}).get(stage, opts.epochs)
    steps = None if epochs is not None else (opts.stage_steps or {}).get(stage, DEFAULT_STAGE_STEPS[stage])
    return Budget(seconds=seconds, epochs=epochs, steps=steps)


def run_training(opts: TrainOptions) -> dict:
    """Run every stage; returns the metrics also stored in the checkpoint.

    Labels, input channels and normalization come from the data set (dataset.json, psf.data.dataset); the
    model's num_classes / in_channels follow them."""
    from psf.train.data import dataset_info, fit_normalization

    from dataclasses import replace

    from psf.train.device import resolve_device
    from psf.train.distributed import join, leave

    world, device = join(resolve_device(opts.device))
    opts = replace(opts, device=device, world=(world.rank, world.size), quiet=opts.quiet or not world.main)
    seed_everything(opts.seed)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    gen = torch.Generator().manual_seed(opts.seed)
    started = time.perf_counter()
    info = dataset_info(opts.data)
    opts = with_dataset(opts, info)
    norm = fit_normalization(opts.data, info)
    size = opts.model.image_size
    splits = {s: cached_split(opts.data, s, size, norm, info=info, root=opts.cache, quiet=not world.main)
              for s in ("train", "val", "test")}
    if world.main:
        stderr.print(f"data: {', '.join(f'{s} {len(d)} slices' for s, d in splits.items())} from {opts.data} "
                     f"({info.modality}, channels {', '.join(info.channels)}; labels {', '.join(info.labels)})")
    nets = build_networks(opts.model)
    key = load_key(opts.key, opts.model)
    train = splits["train"]
    with scratch_folder(opts.data, opts.cache) as scratch:  # this run's views and encoded pairs live on disk, then go
        views = Views(train.images, train.labels, opts.model.num_classes, opts.views, gen,
                      background=_pad_values(norm, opts), bounded=info.modality != "CT", folder=scratch, quiet=opts.quiet)
        log = {
            "image_ae": train_image_autoencoder(nets, views, stage_options(opts, "image_ae"), gen),
            "mask_ae": train_mask_autoencoder(nets, views, stage_options(opts, "mask_ae"), gen),
        }
        pairs = encode_pairs(nets, views, key=key, folder=scratch)
        if world.main:
            stderr.print(f"client: encoded {len(pairs)} pairs ({opts.views} views per slice) for the server"
                         + (f", keyed with consortium key {key.key_id}" if key else ""))
        nets.mapping, log["mapping"] = server_stage(opts, nets.mapping, pairs, gen)
    nets.to("cpu").eval()  # evaluated and saved on the CPU, whatever trained it
    metrics = {
        "val": evaluate(nets, splits["val"], opts.labels, key),
        "test": evaluate(nets, splits["test"], opts.labels, key),
        "mask_autoencoder_val": mask_ae_ceiling(nets, splits["val"], opts.labels),
        "mask_autoencoder_test": mask_ae_ceiling(nets, splits["test"], opts.labels),
    }
    evaluation = case_evaluation(nets, splits["test"], opts.labels, key)
    cut = [name for name, stage in log.items() if isinstance(stage, dict) and stage.get("time_bound")]
    training = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items() if k not in ("model", "key")},
        "stages": log,
        "budget": {"kind": "time-bound" if cut else ("epochs" if opts.epochs or opts.stage_epochs else "steps"),
                   "cut_short_by_minutes": cut, "minutes_cap": opts.minutes},
        "seconds": round(time.perf_counter() - started, 1),
        "slices": {s: len(d) for s, d in splits.items()},
        "device": device_name(opts.device),
        "dataset": {"name": info.name, "modality": info.modality, "channels": list(info.channels),
                    "labels": list(info.labels), "path": str(opts.data)},
    }
    ceiling = metrics["mask_autoencoder_val"]["mean_dice"]
    if opts.min_ceiling and ceiling < opts.min_ceiling:
        training["ceiling_below_minimum"] = {"val_mean_dice": ceiling, "minimum": opts.min_ceiling}
    if world.size > 1:  # torchrun: DDP over this many processes, process 0 wrote the model
        from psf.models import NETWORK_NAMES
        from psf.train.distributed import replicas_identical

        training["processes"] = world.size
        training["replicas_identical"] = replicas_identical([getattr(nets, n) for n in NETWORK_NAMES])
    if world.main:
        save_checkpoint(opts.out, nets, list(opts.labels), norm, metrics, training, key_id=key.key_id if key else None,
                        channels=list(info.channels), modality=info.modality)
    leave()
    return {"metrics": metrics, "training": training, "evaluation": evaluation}


def device_name(device: str) -> str:
    """"cpu", or the CUDA card's name (recorded with the run: speed and the last bits of the weights depend on it)."""
    if str(device).startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def seed_everything(seed: int) -> None:
    """Seed torch and numpy and ask torch for deterministic kernels: same seed, same model (on one device type)."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs (before CUDA starts)
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def with_dataset(opts: TrainOptions, info) -> TrainOptions:
    """The options with the data set's labels and the model sized to its channels and labels."""
    from dataclasses import replace

    model = replace(opts.model, in_channels=len(info.channels), num_classes=len(info.labels))
    return replace(opts, labels=tuple(info.labels), model=model)


def _pad_values(norm, opts: TrainOptions) -> list[float]:
    from psf.pipeline.preprocess import background_value, channel_specs

    return [background_value(s) for s in channel_specs(norm, opts.model.in_channels)]


def server_stage(opts: TrainOptions, mapping: torch.nn.Module, pairs, gen: torch.Generator):
    """Train the server's mapping net on encoded pairs (`mapping` itself, or with the distill defense a
    student built fresh; with dp, `mapping` by DP-SGD: it needs opts.model.map_norm "group"): (net, log)."""
    from psf.train.distill import train_mapping_distilled

    augment = LatentAugment.from_names(opts.latent_augment)
    if opts.membership_defense == "distill":
        return train_mapping_distilled(opts.model, pairs, stage_options(opts, "mapping"), gen, augment)
    if opts.membership_defense == "dp":  # DP-SGD, one slice's views as the unit of privacy
        from psf.train.dp import DpOptions, train_mapping_dp

        dp = DpOptions(epsilon=opts.epsilon, delta=opts.delta, max_grad_norm=opts.max_grad_norm)
        return mapping, train_mapping_dp(mapping, pairs, stage_options(opts, "mapping"), gen, augment, dp)
    return mapping, train_mapping(mapping, pairs, stage_options(opts, "mapping"), gen, augment)


def load_key(path: Path | None, model: ModelConfig):
    """The consortium key for this model's latent channels, or None."""
    if path is None:
        return None
    from psf.models.key import ConsortiumKey

    key = ConsortiumKey.load(path)
    key.check_fits(model.image_latent, model.mask_latent)
    return key
