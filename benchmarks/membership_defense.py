"""Membership defense on the demo data: Dice against membership AUC for the server's training choices.

The client autoencoders of a trained model stay fixed; the training slices' views are encoded once, as
the client sends them. For each row a fresh mapping net is trained with the same seed and time budget,
directly ("none") or distilled from held-out teachers ("distill:K", psf.train.distill with K folds), then
scored on the test split (Dice) and attacked twice, as psf-audit does: loss threshold (117 training vs
48 held-out slices) and a reference model trained on the val split (the attacker's own data), trained
once and shared by all rows. "two-sided" is max(AUC, 1 - AUC) of the stronger attack (the audit's headline).

    python benchmarks/membership_defense.py [demo/model.pt demo/data] [--seconds 324] [--rows "none;distill:2"]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from psf.models.mapping import MappingNet
from psf.privacy.audit import map_losses
from psf.privacy.membership import headline_auc, roc_auc
from psf.train.distill import train_mapping_distilled
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.run import evaluate
from psf.train.stages import EncodedPairs, StageOptions, train_mapping

from fixed_autoencoders import encode_with_fixed_clients, write_outputs  # benchmarks/, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="demo/model.pt", type=Path)
    parser.add_argument("data", nargs="?", default="demo/data", type=Path)
    parser.add_argument("--seconds", type=float, default=324.0, help="server budget per row (psf-train's at --minutes 9)")
    parser.add_argument("--reference-seconds", type=float, default=60.0)
    parser.add_argument("--rows", default="none;distill:2", help="semicolon-separated: none, distill:K")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/membership-defense"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fixed = encode_with_fixed_clients(args.model, args.data)
    nets, labels, splits, pairs, encoded = fixed.nets, fixed.labels, fixed.splits, fixed.pairs, fixed.encoded
    torch.manual_seed(1)
    reference = MappingNet(nets.config)
    train_mapping(reference, EncodedPairs(encoded["val"].z_image, encoded["val"].z_mask),
                  StageOptions(Budget(seconds=args.reference_seconds), batch_size=16, crop=nets.config.grid // 2, quiet=True),
                  torch.Generator().manual_seed(1))
    reference.eval()
    ref_loss = {s: map_losses(reference, encoded[s]) for s in ("train", "test")}
    opts = StageOptions(Budget(seconds=args.seconds), batch_size=32, crop=nets.config.grid // 2, quiet=True)
    rows = []
    for row in args.rows.split(";"):
        torch.manual_seed(0)
        gen, augment, started = torch.Generator().manual_seed(0), LatentAugment.from_names("shift"), time.perf_counter()
        if row == "none":
            nets.mapping = MappingNet(nets.config)
            train_mapping(nets.mapping, pairs, opts, gen, augment)
        else:
            nets.mapping, _ = train_mapping_distilled(nets.config, pairs, opts, gen, augment, folds=int(row.split(":")[1]))
        nets.eval()
        test = evaluate(nets, splits["test"], labels)
        loss = {s: map_losses(nets.mapping, e) for s, e in encoded.items()}
        attacks = {"loss_threshold": {"auc": round(roc_auc(-loss["train"], -np.concatenate([loss["val"], loss["test"]])), 4)},
                   "reference_model": {"auc": round(roc_auc(ref_loss["train"] - loss["train"], ref_loss["test"] - loss["test"]), 4)}}
        rows.append({"row": row, "dice_gm": test["dice"]["grey_matter"], "dice_wm": test["dice"]["white_matter"],
                     "mean_dice": test["mean_dice"], "loss_threshold_auc": attacks["loss_threshold"]["auc"],
                     "reference_model_auc": attacks["reference_model"]["auc"],
                     "two_sided": headline_auc(attacks, tuple(attacks)),
                     "mean_loss": {s: round(float(v.mean()), 5) for s, v in loss.items()},
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    table = ["| server training | Dice GM | Dice WM | mean | loss-threshold AUC | reference-model AUC | two-sided |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['row']} | {r['dice_gm']} | {r['dice_wm']} | {r['mean_dice']} | {r['loss_threshold_auc']} | "
              f"{r['reference_model_auc']} | {r['two_sided']} |" for r in rows]
    write_outputs(args.out, {"model": str(args.model), "seconds_per_row": args.seconds}, rows, table)

if __name__ == "__main__":
    main()
