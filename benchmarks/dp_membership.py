"""DP-SGD against the membership attack: test Dice and membership AUC for epsilon in {1, 4, 8, inf}, wall time.

The client networks of a trained model stay fixed and its training views are encoded once (as in
membership_defense.py). Each row trains a fresh mapping net under the same epoch budget over the encoded
views (32 per undefended step; a DP row takes as many steps as that, psf.train.dp), with the same seed: "none" (psf-train's undefended server stage, BatchNorm), "none-group" (the same
with GroupNorm, what DP needs), "dp:E[:B[:C]]" (psf.train.dp with target epsilon E, B expected slices per step,
clip norm C, GroupNorm; "dp:inf" is the same sampling without clipping or noise), "distill:K" (psf-train's
distillation defense, K teachers, each trained the row's epochs); any row may end in "@EPOCHS" (its own
epoch budget). Every row is scored on the test split (Dice) and attacked as psf-audit does (membership_game:
loss threshold and out-of-fold reference nets, trained once and shared; each held-out slice against the
training slices within 10 mm; "two-sided" is the audit's headline). Then the CPU latency
of the mapping net's ONNX graph (ONNX Runtime, batch 1) with BatchNorm against GroupNorm.

    python benchmarks/dp_membership.py MODEL.pt DATA/ [--epochs 20] [--rows "none;dp:8"] [--out benchmarks/results/DATE-dp]

Writes OUT/run.json (command, commit, host, versions, seed), OUT/rows.json and OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import torch

from psf.io.atomic import write_text_atomic
from psf.models.mapping import MappingNet
from psf.privacy.membership import headline_auc, membership_game, record_keys, shared_records
from psf.privacy.reference import map_losses, out_of_fold_losses
from psf.train.dp import DpOptions, train_mapping_dp
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget
from psf.train.run import evaluate
from psf.train.stages import StageOptions, train_mapping

from fixed_autoencoders import encode_with_fixed_clients  # benchmarks/, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--epochs", type=int, default=20, help="server epochs over the encoded views at 32 per step, every row (DP rows: as many steps)")
    parser.add_argument("--rows", default="none;none-group;dp:inf;dp:8;dp:4;dp:1")
    parser.add_argument("--reference-seconds", type=float, default=60.0, help="each of the two reference nets")
    parser.add_argument("--reference", type=Path, default=None,
                        help="JSON of the reference nets' losses: read if it exists, else written (runs split over processes share one)")
    parser.add_argument("--group-batch", type=int, default=DpOptions.group_batch, help="expected slices per DP step")
    parser.add_argument("--max-grad-norm", type=float, default=DpOptions.max_grad_norm, help="psf-train's default (the 2026-11-30 parts a and b ran 1.0)")
    parser.add_argument("--delta", type=float, default=None, help="default: 1 / training slices")
    parser.add_argument("--views-per-group", type=int, default=DpOptions.views_per_group,
                        help="DP rows: views of a sampled slice used in its step (0: all 12; fewer: cheaper steps, same privacy)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--accountant", choices=("rdp", "prv"), default=DpOptions.accountant, help="DP rows: the accountant that calibrates the noise")
    parser.add_argument("--ema", type=float, default=DpOptions.ema, help="DP rows: average the weights with this decay per step (0: off)")
    parser.add_argument("--map-width", type=int, default=None, help="the rows' mapping-net width (default: the model's; the reference nets and the latency keep the model's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-only", action="store_true", help="only time map.onnx, BatchNorm against GroupNorm")
    parser.add_argument("--out", type=Path, default=Path(f"benchmarks/results/{date.today().isoformat()}-dp"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "run.json", json.dumps(_run_facts(args), indent=2) + "\n")
    if args.latency_only:
        from psf.train.checkpoint import load_checkpoint

        latency = map_latency(load_checkpoint(args.model)[0].config, args.out)
        write_text_atomic(args.out / "latency.json", json.dumps(latency, indent=2) + "\n")
        print(json.dumps(latency, indent=1))
        return
    fixed = encode_with_fixed_clients(args.model, args.data)
    nets, splits, pairs, encoded = fixed.nets, fixed.splits, fixed.pairs, fixed.encoded
    torch.manual_seed(1)
    reference = _reference_losses(args, nets.config, encoded)
    shared = shared_records({s: record_keys(e.images.numpy(), e.labels.numpy()) for s, e in encoded.items()})
    rows = []
    for row in args.rows.split(";"):
        rows.append(_row(row, args, fixed, reference, shared))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "slice_losses"}), flush=True)
        write_text_atomic(args.out / "rows.json", json.dumps(rows, indent=2) + "\n")
    latency = map_latency(nets.config, args.out)
    table = ["| server training | epsilon spent (delta) | Dice GM | Dice WM | mean | loss threshold | reference model | "
             "two-sided (headline) | blind baseline | steps | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spent = "-" if r.get("epsilon") is None else f"{r['epsilon']} ({r['delta']:.2g})"
        table.append(f"| {r['row']} | {spent} | {r['dice_gm']:.4f} | {r['dice_wm']:.4f} | {r['mean_dice']:.4f} | "
                     f"{r['loss_threshold_auc']} | {r['reference_model_auc']} | {r['two_sided']} | {r['blind_baseline_auc']} | "
                     f"{r['steps']} | {r['seconds']} |")
    table += ["", "| map.onnx, ONNX Runtime CPU, batch 1 | threads | median ms | p10 ms | p90 ms |", "|---|---|---|---|---|"]
    table += [f"| {x['norm']} | {x['threads']} | {x['median_ms']} | {x['p10_ms']} | {x['p90_ms']} |" for x in latency]
    write_text_atomic(args.out / "rows.json", json.dumps({"rows": rows, "latency": latency,
                                                          "reference_losses": {s: v.round(6).tolist() for s, v in reference.items()}},
                                                         indent=2) + "\n")
    write_text_atomic(args.out / "table.md", "\n".join(table) + "\n")
    print("\n".join(table))


def _row(row: str, args, fixed, reference: dict, shared: dict) -> dict:
    nets, splits, pairs, encoded = fixed.nets, fixed.splits, fixed.pairs, fixed.encoded
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    name = row
    row, _, epochs = row.partition("@")
    opts = StageOptions(Budget(epochs=int(epochs) if epochs else args.epochs), batch_size=32, lr=args.lr,
                        crop=nets.config.grid // 2, quiet=True)
    started = time.perf_counter()
    config = nets.config if args.map_width is None else replace(nets.config, map_width=args.map_width)
    if row in ("none", "none-group"):
        nets.mapping = MappingNet(replace(config, map_norm="batch" if row == "none" else "group"))
        log = train_mapping(nets.mapping, pairs, opts, gen, LatentAugment())
    elif row.startswith("dp:"):  # dp:EPSILON[:GROUP_BATCH[:CLIP]]
        nets.mapping = MappingNet(replace(config, map_norm="group"))
        epsilon, batch, clip = (row[3:].split(":") + [None, None])[:3]
        dp = DpOptions(epsilon=float(epsilon), delta=args.delta, max_grad_norm=float(clip) if clip else args.max_grad_norm,
                       group_batch=int(batch) if batch else args.group_batch, views_per_group=args.views_per_group or None,
                       accountant=args.accountant, ema=args.ema or None)
        log = train_mapping_dp(nets.mapping, pairs, opts, gen, LatentAugment(), dp)
    elif row.startswith("distill:"):  # psf-train's defense (BatchNorm net), each teacher and the student the row's epochs
        from psf.train.distill import train_mapping_distilled

        nets.mapping, log = train_mapping_distilled(nets.config, pairs, opts, gen, LatentAugment(), folds=int(row[8:]))
        log = {**log, "epochs": log["student"]["epochs"]}
    else:
        raise SystemExit(f"unknown row {row!r}: none, none-group, dp:EPSILON[:B[:C]] or distill:K, each optionally @EPOCHS")
    seconds = round(time.perf_counter() - started, 1)
    nets.eval()
    test = evaluate(nets, splits["test"], fixed.labels)
    loss = {s: map_losses(nets.mapping, e) for s, e in encoded.items()}
    attacks = membership_game(loss, reference, {s: splits[s].positions for s in splits}, shared=shared,
                              volumes={s: e.volumes for s, e in encoded.items()})
    auc = attacks["reference_model"]
    return {"row": name, "epsilon": log.get("epsilon"), "delta": log.get("delta"), "unit": log.get("unit", "-"),
            "noise_multiplier": log.get("noise_multiplier"), "clipped_share": log.get("clipped_share"),
            "dice_gm": test["dice"]["grey_matter"], "dice_wm": test["dice"]["white_matter"], "mean_dice": test["mean_dice"],
            "loss_threshold_auc": attacks["loss_threshold"]["auc"], "reference_model_auc": auc["auc"],
            "reference_model_auc_ci95": auc.get("auc_ci95"), "loss_threshold_auc_ci95": attacks["loss_threshold"].get("auc_ci95"),
            "max_grad_norm": log.get("max_grad_norm"), "group_batch": log.get("expected_groups_per_step"),
            "views_per_group": log.get("views_per_group"), "lr": args.lr,
            "group_grad_norm_quantiles": log.get("group_grad_norm_quantiles"),
            "two_sided": headline_auc(attacks, ("loss_threshold", "reference_model")),
            "blind_baseline_auc": attacks["blind_baseline"]["auc"], "steps": log["steps"], "epochs": log["epochs"],
            "seconds": seconds, "train_loss": log.get("loss"),
            "mean_loss": {s: round(float(v.mean()), 5) for s, v in loss.items()},
            "slice_losses": {s: [round(float(x), 6) for x in v] for s, v in loss.items()}}


def _reference_losses(args, config, encoded: dict) -> dict:
    if args.reference is not None and args.reference.exists():
        return {s: np.asarray(v) for s, v in json.loads(args.reference.read_text()).items()}
    torch.manual_seed(1)
    reference = out_of_fold_losses(config, encoded, args.reference_seconds, torch.Generator().manual_seed(1), quiet=True)
    if args.reference is not None:
        write_text_atomic(args.reference, json.dumps({s: v.tolist() for s, v in reference.items()}) + "\n")
    return reference


def map_latency(config, out: Path, runs: int = 400, rounds: int = 8) -> list[dict]:
    """ms of map.onnx (batch 1, the model's latent grid) with BatchNorm and with GroupNorm: both sessions
    open at once and timed in alternating rounds, so a busy host's load falls on both alike."""
    from psf.export.graphs import Mapping
    from psf.export.onnx import _export_graph
    from psf.models import build_networks
    from psf.runtime.ort import OrtRunner

    z = np.random.default_rng(0).uniform(-1, 1, (1, config.image_latent, config.grid, config.grid)).astype(np.float32)
    paths = {}
    for norm in ("batch", "group"):
        nets = build_networks(replace(config, map_norm=norm)).eval()
        paths[norm] = out / f"map-{norm}.onnx"
        _export_graph(Mapping(nets).eval(), torch.from_numpy(z), "z_image", "z_mask", paths[norm])
    results = []
    for threads in (1, 2):
        runners = {norm: OrtRunner(path, threads=threads).__enter__() for norm, path in paths.items()}
        times = {norm: [] for norm in runners}
        for _ in range(rounds):
            for norm, runner in runners.items():
                for i in range(runs // rounds + 5):
                    t = time.perf_counter()
                    runner.infer({"z_image": z})
                    if i >= 5:  # warm-up calls of each round are not counted
                        times[norm].append((time.perf_counter() - t) * 1e3)
        for norm, runner in runners.items():
            runner.__exit__(None, None, None)
            results.append({"norm": norm, "threads": threads, "median_ms": round(float(np.median(times[norm])), 3),
                            "p10_ms": round(float(np.percentile(times[norm], 10)), 3),
                            "p90_ms": round(float(np.percentile(times[norm], 90)), 3), "runs": len(times[norm])})
    for path in paths.values():
        path.unlink()
    return results


def _run_facts(args) -> dict:
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return None

    import onnxruntime
    import opacus

    return {"command": " ".join([sys.executable, *sys.argv]), "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain")), "host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "versions": {"python": platform.python_version(), "torch": torch.__version__,
            "opacus": opacus.__version__, "onnxruntime": onnxruntime.__version__}, "seed": args.seed,
            "threads": args.threads, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


if __name__ == "__main__":
    main()
