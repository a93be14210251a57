"""psf-train: client autoencoders, encoding, server mapping net; writes model.pt and a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.errors import UsageError


def train(
    data: Annotated[Optional[Path], typer.Argument(help="Data set folder ({train,val,test}/{images,labels}), e.g. from `psf data mni152`; omit with --center.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write.")] = Path("model.pt"),
    minutes: Annotated[Optional[float], typer.Option(help="Wall-time budget for all stages together.")] = 10.0,
    epochs: Annotated[Optional[int], typer.Option(help="Epoch budget per stage (with --minutes: whichever ends first).")] = None,
    views: Annotated[int, typer.Option(help="Augmented views per training slice (client side, before encoding).")] = 12,
    latent_augment: Annotated[str, typer.Option(help="Server-side encoded-data augmentations, comma-separated: shift, flip, rot90, token_dropout, mix, noise, or none.")] = "shift",
    seed: Annotated[int, typer.Option(help="Random seed (data order, augmentation, initialisation).")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads (default: torch's choice).")] = None,
    image_latent: Annotated[int, typer.Option(help="Channels of the image latent (sent to the server).")] = 4,
    mask_latent: Annotated[int, typer.Option(help="Channels of the mask latent (sent back).")] = 3,
    patch: Annotated[int, typer.Option(help="Downsampling from image to latent grid.")] = 4,
    client_width: Annotated[int, typer.Option(help="Width of the client networks.")] = 32,
    client_depth: Annotated[int, typer.Option(help="Residual blocks in each client network.")] = 1,
    map_width: Annotated[int, typer.Option(help="Width of the mapping net's first level.")] = 32,
    map_depth: Annotated[int, typer.Option(help="Residual blocks per mapping-net level.")] = 1,
    image_size: Annotated[int, typer.Option(help="Model input size (slices are padded or shrunk to it).")] = 256,
    baseline: Annotated[Optional[str], typer.Option(help="Train a plain baseline instead: 'unet' (raw images, same budget and augmentation).")] = None,
    center: Annotated[Optional[list[str]], typer.Option(help="NAME=DIR, repeated: train across centers (federated averaging of the autoencoders, one mapping net on all centers' latents).")] = None,
    rounds: Annotated[int, typer.Option(help="With --center: federated-averaging rounds.")] = 4,
    compare_alone: Annotated[bool, typer.Option(help="With --center: also train each center alone with the same budget and compare Dice per center.")] = False,
    key: Annotated[Optional[Path], typer.Option(help="Consortium key file (psf key new): latents are keyed before the server sees them; export and audit then need it too.")] = None,
    membership_defense: Annotated[str, typer.Option(help="How the server trains the mapping net: 'distill' (4 teachers, each blind to a quarter of the slices in 10-slice blocks, label each slice with the prediction of the teacher that never saw it; the deployed net learns only those labels, which blunts membership inference) or 'none' (direct training on the pairs, the default: see README for the trade).")] = "none",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train Privacy-SF on a data set: client autoencoders, encoded pairs, server mapping net."""
    reports_errors(_train)(**{k: v for k, v in locals().items() if k != "debug"}, debug=debug)


def _train(data: Path | None, out: Path, minutes: float | None, epochs: int | None, quiet: bool, views: int, seed: int,
           threads: int | None, baseline: str | None, center: list[str] | None, rounds: int, compare_alone: bool,
           latent_augment: str, key: Path | None, membership_defense: str, **model_sizes) -> None:
    from psf.models.config import ModelConfig
    from psf.progress import stderr
    from psf.train.run import TrainOptions, run_training

    if minutes is None and epochs is None:
        raise UsageError("give a budget: --minutes and/or --epochs")
    if minutes is not None and minutes <= 0 or epochs is not None and epochs < 1 or views < 1:
        raise UsageError("--minutes must be > 0, --epochs and --views >= 1")
    from psf.train.latent_augment import LatentAugment

    latent_augment = LatentAugment.from_names(latent_augment).names()  # refuses unknown names early
    from psf.train.distill import DEFENSES

    if membership_defense not in DEFENSES:
        raise UsageError(f"--membership-defense {membership_defense!r}: choose one of {', '.join(DEFENSES)}")
    if baseline not in (None, "unet"):
        raise UsageError(f"--baseline {baseline!r}: the only baseline is 'unet'")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if (data is None) == (not center):
        raise UsageError("give a data set folder, or --center NAME=DIR two or more times (not both)")
    if center:
        if baseline:
            raise UsageError("--baseline trains on one data set; run it per center")
        return _train_centers(center, out, rounds, compare_alone, TrainOptions(
            data=Path("."), out=out, model=ModelConfig(**model_sizes), minutes=minutes, epochs=epochs, views=views,
            latent_augment=latent_augment, seed=seed, threads=threads, quiet=quiet, key=key,
            membership_defense=membership_defense))
    if baseline and key:
        raise UsageError("--baseline trains a plain U-Net on raw images: it has no latents to key; drop --key")
    if baseline:
        from psf.train.baseline import train_unet

        out = Path("unet.pt") if out == Path("model.pt") else out
        result = train_unet(data, out, minutes, epochs, views, seed, TrainOptions.labels, model_sizes["image_size"], quiet=quiet)
    else:
        model = ModelConfig(**model_sizes)
        model.check()
        result = run_training(TrainOptions(data=data, out=out, model=model, minutes=minutes, epochs=epochs, views=views,
                                           latent_augment=latent_augment, seed=seed, threads=threads, quiet=quiet,
                                           key=key, membership_defense=membership_defense))
    test = result["metrics"]["test"]
    report_path = out.with_suffix(".json")
    from psf.io.atomic import write_text_atomic

    write_text_atomic(report_path, json.dumps(result, indent=2) + "\n")
    per_class = " ".join(f"{k}={v:.4f}" for k, v in test["dice"].items())
    iou = " ".join(f"{k}={v:.4f}" for k, v in test["iou"].items())
    stderr.print(f"test dice {per_class} | iou {iou}")
    if baseline:
        stderr.print(f"wrote {out} and {report_path} ({result['training']['seconds']:.0f} s)")
        print(f"baseline {baseline} test mean dice {test['mean_dice']:.4f}")
        return
    stderr.print(f"wrote {out} and {report_path} ({result['training']['seconds']:.0f} s)")
    print(f"test mean dice {test['mean_dice']:.4f} (mask autoencoder ceiling "
          f"{result['metrics']['mask_autoencoder_test']['mean_dice']:.4f})")


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
