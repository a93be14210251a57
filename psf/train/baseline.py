"""`psf-train --baseline unet`: a plain U-Net on raw images, same data, augmentation and a comparable budget.

It answers "what does privacy cost?": every privacy run can be compared with it class by class.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from psf.io.atomic import atomic_path
from psf.models.unet import UNet
from psf.progress import stderr
from psf.train.augment import intensity
from psf.train.batches import auto_workers
from psf.train.cache import cached_split, scratch_folder
from psf.train.data import SliceSet
from psf.train.loop import Budget, cosine_lr, run_loop
from psf.train.stages import dice_ce_loss, mixed_precision
from psf.train.views import Views

# The baseline's default budget: about what the former 9-minute budget gave it on the demo data (~1.9 steps/s
# on 2 cores: 2,892 steps in 25 minutes, benchmarks/RESULTS.md).
DEFAULT_UNET_STEPS = 1000


def train_unet(data: Path, out: Path, minutes: float | None, epochs: int | None, views: int, seed: int, labels: tuple[str, ...],
               image_size: int = 256, width: int = 16, quiet: bool = False, steps: int | None = None,
               device: str = "cpu", cache: Path | None = None, workers: int | None = None) -> dict:
    """Train on the train split (geometric views + intensity augmentation + 128-pixel crops, like the
    client stages); return test/val Dice and IoU and the run's facts. Labels, channels and normalization
    come from the data set (`labels` is only the fallback's); the budget is `steps` (default
    DEFAULT_UNET_STEPS) or `epochs`, `minutes` a cap; `workers`: DataLoader workers (None: auto)."""
    from psf.pipeline.preprocess import background_value, channel_specs
    from psf.train.data import dataset_info, fit_normalization
    from psf.train.run import seed_everything

    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    info = dataset_info(data)
    labels, norm = tuple(info.labels), fit_normalization(data, info)
    splits = {s: cached_split(data, s, image_size, norm, info=info, root=cache, quiet=quiet) for s in ("train", "val", "test")}
    train = splits["train"]
    pad = [background_value(spec) for spec in channel_specs(norm, len(info.channels))]
    net = UNet(in_channels=len(info.channels), num_classes=len(labels), width=width).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    budget = Budget(seconds=None if minutes is None else minutes * 60 - (time.perf_counter() - started), epochs=epochs,
                    steps=None if epochs is not None else (steps or DEFAULT_UNET_STEPS))

    def make(idx: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = made.crops(idx, image_size // 2, g, 16)
        return intensity(x, g, made.bounded), y

    def step(batch: tuple[torch.Tensor, torch.Tensor], done: float) -> float:
        cosine_lr(opt, 3e-3, done)
        x, y = (t.to(device, non_blocking=True) for t in batch)
        with mixed_precision(device):
            logits = net(x).float()
        loss = dice_ce_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    with scratch_folder(data, cache) as folder:  # the augmented views live on disk while the U-Net trains
        made = Views(train.images, train.labels, len(labels), views, gen, background=pad,
                     bounded=info.modality != "CT", folder=folder, quiet=quiet)
        log = run_loop("baseline: U-Net", step, len(made), 16, budget, gen, quiet, make=make,
                       workers=auto_workers(device) if workers is None else workers, pin=device.startswith("cuda"))
    net.to("cpu").eval()
    metrics = {s: _evaluate(net, splits[s], labels) for s in ("val", "test")}
    params = sum(p.numel() for p in net.parameters())
    stderr.print(f"U-Net baseline: {params / 1e6:.2f} M parameters, {log['steps']} steps")
    with atomic_path(out) as tmp:
        torch.save({"format": "psf-unet/1", "width": width, "labels": list(labels), "channels": list(info.channels),
                    "normalization": norm, "state_dict": net.state_dict(), "metrics": metrics}, tmp)
    return {"metrics": metrics, "training": {"stages": {"unet": log}, "parameters": params,
                                             "seconds": round(time.perf_counter() - started, 1)}}


@torch.no_grad()
def _evaluate(net: UNet, data: SliceSet, labels: tuple[str, ...]) -> dict:
    from psf.train.evaluation import split_report

    return split_report(lambda x: net(torch.from_numpy(x)).argmax(1).numpy(), data, labels)
