"""psf-train: client autoencoders, encoding, server mapping net; writes model.pt and a report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.errors import UsageError


def train(
    data: Annotated[Optional[Path], typer.Argument(help="Data set folder ({train,val,test}/{images,labels}), e.g. from `psf data mni152`; omit with --center.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write.")] = Path("model.pt"),
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock cap over all stages (shared 22/13/60 % by image AE, mask AE, mapping net); when it stops a stage early the run says so. Default: no cap, the step budget decides.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epoch budget per stage (instead of the step budget).")] = None,
    steps: Annotated[Optional[str], typer.Option(help="Step budget: N for every stage, or per stage, e.g. image_ae=2000,mask_ae=900,mapping=2600 (the default; stages left out keep theirs). Same command and seed, same model on any machine.")] = None,
    min_ceiling: Annotated[float, typer.Option(help="Refuse a model whose mask autoencoder reaches a mean Dice below this on val through decode(encode(true mask)): it is written, then the run exits 3 naming the fix. 0 turns the check off.")] = 0.90,
    device: Annotated[str, typer.Option(help="Where to train: auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    views: Annotated[int, typer.Option(help="Augmented views per training slice (client side, before encoding).")] = 12,
    latent_augment: Annotated[str, typer.Option(help="Server-side encoded-data augmentations, comma-separated: shift, flip, rot90, token_dropout, mix, noise, or none.")] = "shift",
    seed: Annotated[int, typer.Option(help="Random seed (data order, augmentation, initialisation).")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads (default: torch's choice).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader worker processes that make the batches (crops, augmentation) while the step runs; the model does not depend on it. Default: 0 on a CPU (the step needs the cores), up to 4 beside a GPU, batches in pinned memory.")] = None,
    image_latent: Annotated[int, typer.Option(help="Channels of the image latent (sent to the server).")] = 4,
    mask_latent: Annotated[int, typer.Option(help="Channels of the mask latent (sent back).")] = 3,
    patch: Annotated[Optional[int], typer.Option(help="Downsampling from image to latent grid. Default: 4 from --image-size 128 up, 2 below (a grid under 32 cells is too coarse for thin structures).")] = None,
    client_width: Annotated[int, typer.Option(help="Width of the client networks.")] = 32,
    client_depth: Annotated[int, typer.Option(help="Residual blocks in each client network.")] = 1,
    map_width: Annotated[int, typer.Option(help="Width of the mapping net's first level; 64-96, with --map-crop full, for tasks with several labels or channels (MR, 4 labels, 2 channels: 0.900 at 32, 0.931 at 96, 0.950 at 96 with --map-crop full; docs/data.md).")] = 32,
    map_depth: Annotated[int, typer.Option(help="Residual blocks per mapping-net level.")] = 1,
    map_crop: Annotated[str, typer.Option(help="What the mapping net trains on: 'half' (random crops of half the latent grid, 32 per step; the default) or 'full' (the whole grid, 8 per step: the same latent cells per step, more context). MR, 4 labels, 2 channels: 0.900 -> 0.918 at width 32, 0.950 at width 96; the demo: 0.943 -> 0.941 (docs/data.md).")] = "half",
    image_size: Annotated[int, typer.Option(help="Model input size (slices are padded or shrunk to it).")] = 256,
    baseline: Annotated[Optional[str], typer.Option(help="Train a plain baseline instead: 'unet' (raw images, same budget and augmentation).")] = None,
    center: Annotated[Optional[list[str]], typer.Option(help="NAME=DIR, repeated: train across centers (federated averaging of the autoencoders, one mapping net on all centers' latents).")] = None,
    rounds: Annotated[int, typer.Option(help="With --center: federated-averaging rounds.")] = 4,
    compare_alone: Annotated[bool, typer.Option(help="With --center: also train each center alone with the same budget and compare Dice per center.")] = False,
    key: Annotated[Optional[Path], typer.Option(help="Consortium key file (psf key new): latents are keyed before the server sees them; export and audit then need it too.")] = None,
    membership_defense: Annotated[str, typer.Option(help="How the server trains the mapping net: 'distill' (4 teachers, each blind to a quarter of the slices in 10-slice blocks, label each slice with the prediction of the teacher that never saw it; the deployed net learns only those labels, which blunts membership inference), 'dp' (DP-SGD through Opacus, a provable (epsilon, delta) bound per training slice with all its views; needs --epsilon; the mapping net then uses GroupNorm) or 'none' (direct training on the pairs, the default: see README for the trade).")] = "none",
    epsilon: Annotated[Optional[float], typer.Option(help="With --membership-defense dp: the privacy target epsilon per training slice (e.g. 8; smaller is more private; 'inf' trains the same way without clipping or noise).")] = None,
    delta: Annotated[Optional[float], typer.Option(help="With --membership-defense dp: delta (default 1 / number of training slices).")] = None,
    max_grad_norm: Annotated[float, typer.Option(help="With --membership-defense dp: clipping norm of each slice's gradient.")] = 0.1,
    cache: Annotated[Optional[Path], typer.Option(help="Folder for the preprocessed slices and the run's encoded pairs, read from disk a batch at a time so memory does not grow with the data set. Default: DATA/.psf-cache (or ~/.cache/psf when DATA is read-only); reused while the data and preprocessing are unchanged.")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train Privacy-SF on a data set: client autoencoders, encoded pairs, server mapping net."""
    flags = TrainFlags(**{k: v for k, v in locals().items() if k != "debug"})
    reports_errors(_train)(flags, debug=debug)


MODEL_SIZE_FLAGS = ("image_latent", "mask_latent", "patch", "client_width", "client_depth", "map_width", "map_depth",
                    "image_size")


@dataclass(frozen=True)
class TrainFlags:
    """psf-train's flags as typed; `options()` checks them and builds psf.train.run.TrainOptions."""

    data: Path | None
    out: Path
    minutes: float | None
    epochs: int | None
    steps: str | None
    min_ceiling: float
    device: str
    views: int
    latent_augment: str
    seed: int
    threads: int | None
    workers: int | None
    image_latent: int
    mask_latent: int
    patch: int | None
    client_width: int
    client_depth: int
    map_width: int
    map_depth: int
    map_crop: str
    image_size: int
    baseline: str | None
    center: list[str] | None
    rounds: int
    compare_alone: bool
    key: Path | None
    membership_defense: str
    epsilon: float | None
    delta: float | None
    max_grad_norm: float
    cache: Path | None
    quiet: bool

    def options(self):
        """The checked TrainOptions (data is "." with --center: each center brings its own)."""
        from psf.models.config import ModelConfig
        from psf.train.device import resolve_device
        from psf.train.distill import DEFENSES
        from psf.train.latent_augment import LatentAugment
        from psf.train.run import MAP_CROPS, TrainOptions, parse_steps

        if self.workers is not None and self.workers < 0:
            raise UsageError(f"--workers {self.workers}: give 0 (batches made in the training process) or more")
        if self.minutes is not None and self.minutes <= 0 or self.epochs is not None and self.epochs < 1 or self.views < 1:
            raise UsageError("--minutes must be > 0, --epochs and --views >= 1")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give --steps or --epochs, not both")
        if not 0 <= self.min_ceiling < 1:
            raise UsageError(f"--min-ceiling {self.min_ceiling}: give a Dice between 0 (off) and 1")
        if self.map_crop not in MAP_CROPS:
            raise UsageError(f"--map-crop {self.map_crop!r}: choose {' or '.join(MAP_CROPS)}")
        if self.membership_defense not in DEFENSES:
            raise UsageError(f"--membership-defense {self.membership_defense!r}: choose one of {', '.join(DEFENSES)}")
        if self.baseline not in (None, "unet"):
            raise UsageError(f"--baseline {self.baseline!r}: the only baseline is 'unet'")
        if (self.data is None) == (not self.center):
            raise UsageError("give a data set folder, or --center NAME=DIR two or more times (not both)")
        if self.baseline and self.center:
            raise UsageError("--baseline trains on one data set; run it per center")
        if self.baseline and self.key:
            raise UsageError("--baseline trains a plain U-Net on raw images: it has no latents to key; drop --key")
        sizes = {name: getattr(self, name) for name in MODEL_SIZE_FLAGS}
        if sizes["patch"] is None:
            from psf.models.config import default_patch

            sizes["patch"] = default_patch(self.image_size)
        dp = dict(epsilon=self.epsilon, delta=self.delta, max_grad_norm=self.max_grad_norm)
        if self.membership_defense == "dp":
            from psf.train.dp import DpOptions, require_opacus

            DpOptions(**dp).check()  # a missing or bad --epsilon, or no Opacus, fails before any training
            require_opacus()
            sizes["map_norm"] = "group"  # Opacus refuses BatchNorm; recorded in the checkpoint's config
        elif self.epsilon is not None or self.delta is not None:
            raise UsageError("--epsilon and --delta set the DP target: add --membership-defense dp")
        model = ModelConfig(**sizes)
        model.check()
        return TrainOptions(
            data=self.data or Path("."), out=self.out, model=model, minutes=self.minutes, epochs=self.epochs,
            views=self.views, latent_augment=LatentAugment.from_names(self.latent_augment).names(),  # refuses unknown names
            seed=self.seed, threads=self.threads, quiet=self.quiet, key=self.key,
            membership_defense=self.membership_defense, stage_steps=parse_steps(self.steps),
            min_ceiling=self.min_ceiling, device=resolve_device(self.device), cache=self.cache, workers=self.workers,
            map_crop=self.map_crop, **dp)


def _train(flags: TrainFlags) -> None:
    import os

    from psf.progress import stderr
    from psf.train.run import run_training

    opts = flags.options()
    if flags.threads:
        import torch

        torch.set_num_threads(flags.threads)
    if flags.center:
        return _train_centers(flags.center, opts.out, flags.rounds, flags.compare_alone, opts)
    if flags.baseline:
        from psf.train.baseline import train_unet

        out = Path("unet.pt") if opts.out == Path("model.pt") else opts.out
        result = train_unet(opts.data, out, opts.minutes, opts.epochs, opts.views, opts.seed, opts.labels,
                            opts.model.image_size, quiet=opts.quiet, steps=(opts.stage_steps or {}).get("unet"),
                            device=opts.device, cache=opts.cache, workers=opts.workers)
    else:
        out = opts.out
        result = run_training(opts)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # torchrun: process 0 writes the report
    test = result["metrics"]["test"]
    report_path = out.with_suffix(".json")
    from psf.io.atomic import write_text_atomic

    write_text_atomic(report_path, json.dumps(result, indent=2) + "\n")
    per_class = " ".join(f"{k}={v:.4f}" for k, v in test["dice"].items())
    iou = " ".join(f"{k}={v:.4f}" for k, v in test["iou"].items())
    stderr.print(f"test dice {per_class} | iou {iou}")
    stderr.print(f"wrote {out} and {report_path} ({result['training']['seconds']:.0f} s)")
    if flags.baseline:
        print(f"baseline {flags.baseline} test mean dice {test['mean_dice']:.4f}")
        return
    print(f"test mean dice {test['mean_dice']:.4f} (mask autoencoder ceiling "
          f"{result['metrics']['mask_autoencoder_test']['mean_dice']:.4f})")
    _check_ceiling(result, out, opts.model.patch)


def _check_ceiling(result: dict, out: Path, patch: int) -> None:
    """Exit 3 when the mask autoencoder cannot represent the true masks well enough (model written, unusable)."""
    low = result["training"].get("ceiling_below_minimum")
    if not low:
        return
    from psf.progress import stderr
    from psf.train.run import DEFAULT_STAGE_STEPS

    done = result["training"]["stages"]["mask_ae"].get("steps") or DEFAULT_STAGE_STEPS["mask_ae"]
    # A finer latent grid helped more than steps did (factory MR, 64 px: patch 4 -> 2 took the ceiling 0.80 -> 0.99,
    # 6x the steps only to 0.89): thin structures need grid cells, so that fix comes first.
    finer = f"Try a finer latent grid first, --patch {patch // 2} (thin structures need it); or: " if patch > 2 else ""
    stderr.print(f"[red]error:[/red] the mask autoencoder reaches mean Dice {low['val_mean_dice']:.4f} on val through "
                 f"decode(encode(true mask)), below {low['minimum']:.2f}: no mapping net can do better, so {out} is not "
                 f"usable. {finer}Train the mask autoencoder longer, e.g. --steps mask_ae={2 * done} (or --epochs), "
                 "drop a --minutes cap that cut it short, or pass --min-ceiling 0 to accept it", highlight=False)
    raise typer.Exit(3)


def _train_centers(specs: list[str], out: Path, rounds: int, compare_alone: bool, opts) -> None:
    """--center: one federated model; with --compare-alone, each center alone too, Dice side by side."""
    from dataclasses import replace

    from psf.io.atomic import write_text_atomic
    from psf.progress import stderr
    from psf.train.multicenter import Center, run_multicenter
    from psf.train.run import run_training

    opts.model.check()
    centers = [Center.parse(spec) for spec in specs]
    result = run_multicenter(opts, centers, rounds)
    if compare_alone:
        result["alone"] = {}
        for c in centers:
            alone_out = out.with_name(f"{out.stem}.{c.name}-alone{out.suffix}")
            alone = run_training(replace(opts, data=c.data, out=alone_out))
            result["alone"][c.name] = alone["metrics"]["test"]
    write_text_atomic(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    lines = []
    for c in centers:
        joint = result["metrics"]["centers"][c.name]
        line = f"{c.name}: multi-center dice " + " ".join(f"{k}={v:.4f}" for k, v in joint["dice"].items() if k != "other")
        if compare_alone:
            alone = result["alone"][c.name]
            line += " | alone " + " ".join(f"{k}={v:.4f}" for k, v in alone["dice"].items() if k != "other")
            line += f" | gain {joint['mean_dice'] - alone['mean_dice']:+.4f} mean"
        lines.append(line)
    stderr.print(f"wrote {out} and {out.with_suffix('.json')} ({result['training']['seconds']:.0f} s)")
    print("\n".join(lines))
