"""Ablation of the server's encoded-data augmentations on the demo data.

The client autoencoders of a trained model (default demo/model.pt) are kept fixed: the training slices'
geometric views are encoded once, exactly as the client would send them, and for every augmentation
set a fresh mapping net is trained on those latents with the same seed and time budget, then scored on
the test split (Dice, grey and white matter) and attacked (membership inference, loss threshold: does
the augmentation also narrow the gap between training and held-out losses?). Only the server stage varies, so differences are the
augmentations' doing (and the run-to-run noise, which the repeated baseline row shows).

    python -m benchmarks.latent_augment_ablation [demo/model.pt demo/data] [--seconds 150] [--out benchmarks/latent-augment-ablation]
        [--variants "shift;shift,token_dropout,mix,noise"]   (rows to run; default: the table's nine)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from psf.models.mapping import MappingNet
from psf.privacy.reference import map_losses
from psf.privacy.membership import roc_auc
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.evaluation import evaluate
from psf.train.stages import StageOptions, train_mapping

from benchmarks.fixed_autoencoders import encode_with_fixed_clients, write_outputs

VARIANTS = ["none", "shift", "shift,flip", "shift,rot90", "shift,token_dropout", "shift,mix", "shift,noise",
            "shift,flip,rot90,token_dropout,mix,noise", "shift"]  # "shift" again: the noise floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="demo/model.pt", type=Path)
    parser.add_argument("data", nargs="?", default="demo/data", type=Path)
    parser.add_argument("--seconds", type=float, default=150.0, help="mapping-net training budget per variant")
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None,
                        help="output stem (default: benchmarks/results/<date>-latent-augment-ablation/result)")
    parser.add_argument("--variants", help="semicolon-separated augmentation sets (default: the nine of the table)")
    args = parser.parse_args()
    if args.out is None:
        from psf.bench.provenance import results_dir

        args.out = results_dir("latent-augment-ablation") / "result"
    torch.set_num_threads(args.threads)
    fixed = encode_with_fixed_clients(args.model, args.data, args.views)
    nets, labels, splits, pairs, encoded = fixed.nets, fixed.labels, fixed.splits, fixed.pairs, fixed.encoded
    rows = []
    for variant in args.variants.split(";") if args.variants else VARIANTS:
        augment = LatentAugment.from_names(variant)
        torch.manual_seed(0)
        nets.mapping = MappingNet(nets.config)
        started = time.perf_counter()
        log = train_mapping(nets.mapping, pairs, StageOptions(Budget(seconds=args.seconds), batch_size=32,
                                                              crop=nets.config.grid // 2, quiet=True),
                            torch.Generator().manual_seed(0), augment)
        nets.eval()
        test = evaluate(nets, splits["test"], labels)
        losses = {s: map_losses(nets.mapping, e) for s, e in encoded.items()}
        auc = roc_auc(-losses["train"], -np.concatenate([losses["val"], losses["test"]]))
        rows.append({"augment": augment.names(), "dice_gm": test["dice"]["grey_matter"], "dice_wm": test["dice"]["white_matter"],
                     "mean_dice": test["mean_dice"], "membership_auc": round(auc, 4), "steps": log["steps"],
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    table = ["| server augmentation | Dice GM | Dice WM | mean | membership AUC (loss threshold) | steps |", "|---|---|---|---|---|---|"]
    table += [f"| {r['augment']} | {r['dice_gm']} | {r['dice_wm']} | {r['mean_dice']} | {r['membership_auc']} | {r['steps']} |" for r in rows]
    write_outputs(args.out, {"model": str(args.model), "seconds_per_variant": args.seconds}, rows, table)

if __name__ == "__main__":
    main()
