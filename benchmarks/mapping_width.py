"""How much mapping net a task needs: fresh mapping nets of several widths and depths on fixed client networks.

The client autoencoders of a trained model stay fixed and its training views are encoded once (as the client
sends them); each row trains a fresh mapping net of the row's size for the same number of steps, with the same
seed, and scores the whole pipeline on val and test. Only the server's net varies, so the rows show whether the
mapping net is what separates psf from a plain U-Net on a task (byod_baseline.py), and how much of it is needed.

    python -m benchmarks.mapping_width RUN/psf.pt RUN/data [--rows "32:1;64:1;96:1:full"] [--steps 2600]
        [--out benchmarks/results/DATE-mapping-width/sweep]

A row is WIDTH:DEPTH[:CROP] (psf-train's --map-width, --map-depth and --map-crop half|full; default half). Writes
OUT.json, OUT.md and run.json beside them.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch

from psf.models.mapping import MappingNet
from psf.train.evaluation import evaluate
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.run import MAP_CROPS
from psf.train.stages import StageOptions, train_mapping

from benchmarks.fixed_autoencoders import encode_with_fixed_clients, write_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--rows", default="32:1;32:2;64:1;96:1", help="WIDTH:DEPTH[:half|full] rows, ';'-separated")
    parser.add_argument("--steps", type=int, default=2600, help="mapping-net steps per row (psf-train's default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(f"benchmarks/results/{date.today().isoformat()}-mapping-width/sweep"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fixed = encode_with_fixed_clients(args.model, args.data)
    nets, rows = fixed.nets, []
    for row in args.rows.split(";"):
        width, depth, crop = (row.split(":") + ["half"])[:3]
        width, depth = int(width), int(depth)
        torch.manual_seed(args.seed)
        config = replace(nets.config, map_width=width, map_depth=depth)
        nets.mapping = MappingNet(config)
        batch, share = MAP_CROPS[crop]
        opts = StageOptions(Budget(steps=args.steps), batch_size=batch, crop=round(config.grid * share), quiet=True)
        started = time.perf_counter()
        log = train_mapping(nets.mapping, fixed.pairs, opts, torch.Generator().manual_seed(args.seed), LatentAugment())
        seconds = round(time.perf_counter() - started, 1)
        nets.eval()
        test, val = evaluate(nets, fixed.splits["test"], fixed.labels), evaluate(nets, fixed.splits["val"], fixed.labels)
        rows.append({"width": width, "depth": depth, "crop": crop, "batch": batch, "parameters": sum(p.numel() for p in nets.mapping.parameters()),
                     "steps": log["steps"], "seconds": seconds, "loss": log["loss"], "val_mean_dice": val["mean_dice"],
                     "test_mean_dice": test["mean_dice"], "test_dice": test["dice"]})
        print(rows[-1], flush=True)
    labels = list(fixed.labels)
    table = [f"| width | depth | crop (batch) | parameters | steps | seconds | val mean Dice | test mean Dice | {' | '.join(labels)} |",
             "|---" * (8 + len(labels)) + "|"]
    table += [f"| {r['width']} | {r['depth']} | {r['crop']} ({r['batch']}) | {r['parameters']:,} | {r['steps']} | {r['seconds']} | {r['val_mean_dice']:.4f} | "
              f"{r['test_mean_dice']:.4f} | " + " | ".join(f"{r['test_dice'][n]:.4f}" for n in labels) + " |" for r in rows]
    write_outputs(args.out, {"model": str(args.model), "data": str(args.data), "steps": args.steps, "seed": args.seed,
                             "pairs": len(fixed.pairs), "config": nets.config.to_dict()}, rows, table)


if __name__ == "__main__":
    main()
