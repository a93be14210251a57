"""Membership defense on the demo data: Dice against membership AUC for the server's training choices.

The client autoencoders of a trained model stay fixed; the training slices' views are encoded once, as
the client sends them. For each row a fresh mapping net is trained with the same seed and time budget,
directly ("none") or distilled from held-out teachers ("distill:K[:S[:W]]", psf.train.distill with K
folds, each teacher on S of them, default K - 1; targets W x teachers' + (1 - W) x true, default W = 1),
"distill-alt:..." with the blocks' folds alternating along the scan instead of drawn at random;
with the server augmentations after "@" (default "shift", psf-train's), then scored on the test split
(Dice) and attacked as psf-audit does (psf.privacy.membership.membership_game): loss threshold and the
out-of-fold reference nets (psf.privacy.reference), trained once and shared by all rows; each held-out
slice against the training slices within 10 mm. "two-sided" is max(AUC, 1 - AUC) of the stronger attack
(the audit's headline).

    python -m benchmarks.membership_defense [demo/model.pt demo/data] [--seconds 324] [--rows "none;distill:2@shift,noise"]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from psf.models.mapping import MappingNet
from psf.privacy.membership import headline_auc, membership_game, record_keys, shared_records
from psf.privacy.reference import map_losses, out_of_fold_losses
from psf.train.distill import train_mapping_distilled
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.evaluation import evaluate
from psf.train.stages import StageOptions, train_mapping

from benchmarks.fixed_autoencoders import encode_with_fixed_clients, write_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="demo/model.pt", type=Path)
    parser.add_argument("data", nargs="?", default="demo/data", type=Path)
    parser.add_argument("--seconds", type=float, default=324.0, help="server budget per row (psf-train's at --minutes 9)")
    parser.add_argument("--reference-seconds", type=float, default=86.0, help="each of the two reference nets (psf-audit's)")
    parser.add_argument("--rows", default="none;distill:2;distill:4", help="semicolon-separated: none, distill:K[:S[:W]], distill-alt:..., each optionally @AUGMENTATIONS")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients-on-all-slices", type=float, default=None, metavar="SECONDS",
                        help="diagnostic: retrain the client autoencoders on train+val+test first (psf-train's 9-min share: 189)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every row's server training (the references keep theirs)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output stem (default: benchmarks/results/<date>-membership-defense/result)")
    args = parser.parse_args()
    if args.out is None:
        from psf.bench.provenance import results_dir

        args.out = results_dir("membership-defense") / "result"
    torch.set_num_threads(args.threads)
    fixed = encode_with_fixed_clients(args.model, args.data, clients_on_all_slices=args.clients_on_all_slices)
    nets, labels, splits, pairs, encoded = fixed.nets, fixed.labels, fixed.splits, fixed.pairs, fixed.encoded
    torch.manual_seed(1)
    reference = out_of_fold_losses(nets.config, encoded, args.reference_seconds, torch.Generator().manual_seed(1), quiet=True)
    shared = shared_records({s: record_keys(e.images.numpy(), e.labels.numpy()) for s, e in encoded.items()})
    opts = StageOptions(Budget(seconds=args.seconds), batch_size=32, crop=nets.config.grid // 2, quiet=True)
    rows = []
    for row in args.rows.split(";"):
        torch.manual_seed(args.seed)
        row, _, augment_names = row.partition("@")
        gen, augment, started = torch.Generator().manual_seed(args.seed), LatentAugment.from_names(augment_names or "shift"), time.perf_counter()
        if row == "none":
            nets.mapping = MappingNet(nets.config)
            train_mapping(nets.mapping, pairs, opts, gen, augment)
        else:
            kind, folds, seen, weight = (row.split(":") + [None, None])[:4]
            nets.mapping, _ = train_mapping_distilled(nets.config, pairs, opts, gen, augment, folds=int(folds),
                                                      seen_folds=int(seen) if seen else None,
                                                      teacher_weight=float(weight) if weight else 1.0,
                                                      alternate=kind == "distill-alt")
        nets.eval()
        test = evaluate(nets, splits["test"], labels)
        loss = {s: map_losses(nets.mapping, e) for s, e in encoded.items()}
        positions = {s: splits[s].positions for s in ("train", "val", "test")}
        attacks = membership_game(loss, reference, positions, shared=shared,
                                  volumes={s: e.volumes for s, e in encoded.items()})
        rows.append({"row": row, "augment": augment.names(), "dice_gm": test["dice"]["grey_matter"], "dice_wm": test["dice"]["white_matter"],
                     "mean_dice": test["mean_dice"], "loss_threshold_auc": attacks["loss_threshold"]["auc"],
                     "reference_model_auc": attacks["reference_model"]["auc"],
                     "two_sided": headline_auc(attacks, ("loss_threshold", "reference_model")),
                     "blind_baseline_auc": attacks["blind_baseline"]["auc"],
                     "all_members_two_sided": headline_auc(attacks["all_members"], ("loss_threshold", "reference_model")),
                     "per_block": attacks["per_block"],
                     "mean_loss": {s: round(float(v.mean()), 5) for s, v in loss.items()},
                     "slice_losses": {s: [round(float(x), 6) for x in v] for s, v in loss.items()},  # to re-score offline
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    table = ["| server training | Dice GM | Dice WM | mean | loss-threshold AUC | reference-model AUC | two-sided "
             "| blind baseline | two-sided, all members |", "|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['row']} @ {r['augment']} | {r['dice_gm']} | {r['dice_wm']} | {r['mean_dice']} | {r['loss_threshold_auc']} | "
              f"{r['reference_model_auc']} | {r['two_sided']} | {r['blind_baseline_auc']} | {r['all_members_two_sided']} |" for r in rows]
    write_outputs(args.out, {"model": str(args.model), "seconds_per_row": args.seconds, "seed": args.seed,
                                "clients_on_all_slices": args.clients_on_all_slices,
                             "reference_losses": {s: [round(float(x), 6) for x in v] for s, v in reference.items()},
                             "shared_records": {s: v.tolist() for s, v in shared.items()}}, rows, table)

if __name__ == "__main__":
    main()
