"""The DP results table and the Dice-against-epsilon plot from dp_membership.py's output folders.

Each row's membership game is scored again from the per-slice losses its rows.json keeps and the shared
reference losses, so that every row (also those written before rows.json carried them) gets the 95%
bootstrap CI of both attacks and of the headline (the stronger attack, read in its better direction, as
psf-audit reports it). The recomputed AUCs must equal the ones the run printed: a check that the losses,
the reference and the data match.

    python benchmarks/dp_table.py --set "50 subjects" DATA REFERENCE.json PART_DIR [PART_DIR ...] \
        [--set "demo split" ...] --out benchmarks/results/2026-11-30-dp

Writes OUT/table.md, OUT/summary.json and OUT/dice_vs_epsilon.svg (hand-written SVG: no plotting library needed).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from psf.io.atomic import write_text_atomic
from psf.pipeline.preprocess import DEFAULT_NORMALIZATION
from psf.privacy.membership import headline_auc, membership_game, record_keys, shared_records

ATTACKS = ("loss_threshold", "reference_model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="+", action="append", required=True, metavar="NAME DATA REFERENCE PART",
                        help="a data set's name, its folder, the reference losses and dp_membership.py output folders")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for name, data, reference, *parts in args.set:
        rows += data_set_rows(name, Path(data), Path(reference), [Path(p) for p in parts])
    write_text_atomic(args.out / "summary.json", json.dumps(rows, indent=2) + "\n")
    table = markdown(rows)
    write_text_atomic(args.out / "table.md", table)
    write_text_atomic(args.out / "dice_vs_epsilon.svg", svg(rows))
    print(table)


def data_set_rows(name: str, data: Path, reference_file: Path, parts: list[Path]) -> list[dict]:
    from psf.train.checkpoint import load_checkpoint
    from psf.train.data import load_split

    reference = {s: np.asarray(v) for s, v in json.loads(reference_file.read_text()).items()}
    splits, rows = None, []
    for part in parts:
        run = json.loads((part / "run.json").read_text())
        saved = json.loads((part / "rows.json").read_text())
        saved = saved["rows"] if isinstance(saved, dict) else saved
        if splits is None:
            size = load_checkpoint(run["args"]["model"])[0].config.image_size
            splits = {s: load_split(data, s, size, DEFAULT_NORMALIZATION) for s in ("train", "val", "test")}
            shared = shared_records({s: record_keys(d.images, d.labels) for s, d in splits.items()})
        for r in saved:
            loss = {s: np.asarray(v) for s, v in r["slice_losses"].items()}
            game = membership_game(loss, reference, {s: d.positions for s, d in splits.items()}, shared=shared,
                                   volumes={s: d.volumes for s, d in splits.items()})
            for attack in ATTACKS:
                if abs(game[attack]["auc"] - r[f"{attack}_auc"]) > 1e-3:
                    raise SystemExit(f"{part}: row {r['row']}: {attack} AUC {game[attack]['auc']} rescored, "
                                     f"{r[f'{attack}_auc']} written: not the same losses, reference or data")
            rows.append(_row(name, part, run, r, game))
    none = {}  # the undefended net (BatchNorm) of each seed: what a row's Dice cost is measured against
    for r in rows:
        if r["row"].partition("@")[0] == "none":
            none.setdefault(r["seed"], r["mean_dice"])
    for r in rows:
        reference = none.get(r["seed"])  # no undefended net of this seed: no cost (another seed's would mislead)
        r["dice_cost"] = round(reference - r["mean_dice"], 4) if reference is not None else None
    return rows


def _row(name: str, part: Path, run: dict, r: dict, game: dict) -> dict:
    args = run["args"]
    kind, _, epochs = r["row"].partition("@")
    dp = kind.startswith("dp:")
    fields = kind.split(":")
    strongest = max(ATTACKS, key=lambda a: max(game[a]["auc"], 1 - game[a]["auc"]))
    lo, hi = game[strongest]["auc_ci95"]
    headline_ci = [lo, hi] if game[strongest]["auc"] >= 0.5 else [round(1 - hi, 4), round(1 - lo, 4)]
    return {"data": name, "part": part.name, "row": r["row"], "kind": "dp" if dp else kind.split(":")[0],
            "seed": run.get("seed", args.get("seed", 0)), "accountant": args.get("accountant", "rdp") if dp else None,
            "ema": args.get("ema") if dp else None,
            "target_epsilon": (float(fields[1]) if dp else None), "epsilon": r.get("epsilon"), "delta": r.get("delta"),
            "max_grad_norm": (float(fields[3]) if dp and len(fields) > 3 else args.get("max_grad_norm")) if dp else None,
            "group_batch": (int(fields[2]) if dp and len(fields) > 2 else args.get("group_batch")) if dp else None,
            "views_per_group": args.get("views_per_group") if dp else None, "lr": args.get("lr"),
            "epochs_planned": int(epochs) if epochs else args["epochs"], "steps": r["steps"],
            "noise_multiplier": r.get("noise_multiplier"), "clipped_share": r.get("clipped_share"),
            "dice_gm": r["dice_gm"], "dice_wm": r["dice_wm"], "mean_dice": r["mean_dice"],
            **{f"{a}_auc": game[a]["auc"] for a in ATTACKS}, **{f"{a}_auc_ci95": game[a]["auc_ci95"] for a in ATTACKS},
            "headline_auc": headline_auc(game, ATTACKS), "headline_attack": strongest, "headline_auc_ci95": headline_ci,
            "blind_baseline_auc": game["blind_baseline"]["auc"], "seconds": r["seconds"],
            "group_grad_norm_quantiles": r.get("group_grad_norm_quantiles")}


def _label(r: dict) -> str:
    if r["kind"] != "dp":
        return {"none": "none (BatchNorm, psf-train's)", "none-group": "none, GroupNorm"}.get(r["kind"], r["row"].partition("@")[0])
    eps = "inf (no clip, no noise)" if math.isinf(r["target_epsilon"]) else f"{r['target_epsilon']:g}"
    extra = "" if math.isinf(r["target_epsilon"]) else f", C {r['max_grad_norm']:g}"
    extra += f", {r['group_batch']} slices/step"
    extra += "" if not r["views_per_group"] else f", {r['views_per_group']} views/slice"
    extra += "" if r["lr"] in (None, 3e-3) else f", lr {r['lr']:g}"
    extra += ", PRV" if r.get("accountant") == "prv" else ""
    extra += f", EMA {r['ema']:g}" if r.get("ema") else ""
    return f"dp, epsilon {eps}{extra}"


def markdown(rows: list[dict]) -> str:
    ci = lambda c: f"{c[0]:.3f}-{c[1]:.3f}"  # noqa: E731
    lines = ["| data | seed | server training | epochs (steps) | epsilon spent (delta) | Dice GM | Dice WM | mean Dice | Dice cost | "
             "loss-threshold AUC (95% CI) | reference-model AUC (95% CI) | **headline** (95% CI) | blind | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spent = "-" if r["epsilon"] is None else f"{r['epsilon']:.3f} ({r['delta']:.2g})"
        cost = "-" if r["dice_cost"] is None else f"{r['dice_cost']:.3f}"
        lines.append(f"| {r['data']} | {r['seed']} | {_label(r)} | {r['epochs_planned']} ({r['steps']}) | {spent} | {r['dice_gm']:.4f} | "
                     f"{r['dice_wm']:.4f} | **{r['mean_dice']:.4f}** | {cost} | "
                     f"{r['loss_threshold_auc']:.3f} ({ci(r['loss_threshold_auc_ci95'])}) | "
                     f"{r['reference_model_auc']:.3f} ({ci(r['reference_model_auc_ci95'])}) | "
                     f"**{r['headline_auc']:.3f}** ({ci(r['headline_auc_ci95'])}) | {r['blind_baseline_auc']:.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def svg(rows: list[dict], width: int = 720, height: int = 400) -> str:
    """Mean test Dice against epsilon (1, 4, 8 on a log axis, then inf), one line per data set and clip norm
    (each data set's most common DP recipe: slices per step, views, steps and seed); the undefended and
    distilled nets as dashed levels."""
    left, right, top, bottom = 70, 220, 30, 50
    xs = {1.0: 0.0, 4.0: math.log(4) / math.log(8) * 0.8, 8.0: 0.8, math.inf: 1.0}
    recipe = lambda r: (r["data"], r["group_batch"], r["views_per_group"], r["steps"], r["seed"], r["lr"],  # noqa: E731
                        r["accountant"], r["ema"])
    dp_rows = [r for r in rows if r["kind"] == "dp" and r["target_epsilon"] in xs]
    counts = Counter(recipe(r) for r in dp_rows)  # each data set's most common recipe (ties: the larger key as text)
    main = {data: max((k for k in counts if k[0] == data), key=lambda k: (counts[k], str(k))) for data, *_ in counts}
    plain = [r for r in dp_rows if main[r["data"]] == recipe(r)]
    dice = [r["mean_dice"] for r in rows]
    lo, hi = math.floor(min(dice) * 20) / 20, math.ceil(max(dice) * 20) / 20
    px = lambda x: left + xs[x] * (width - left - right)  # noqa: E731
    py = lambda y: top + (hi - y) / (hi - lo) * (height - top - bottom)  # noqa: E731
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2 - 40}" y="18" font-size="14">Test Dice against epsilon (DP-SGD, mapping net)</text>']
    for y in np.arange(lo, hi + 1e-9, 0.05):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for x in xs:
        out.append(_text(px(x), height - bottom + 18, "inf" if math.isinf(x) else f"{x:g}", "middle"))
    out.append(_text((left + width - right) / 2, height - 12, "epsilon per slice (log scale; inf: no clipping, no noise)", "middle"))
    out.append(f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle">'
               'mean test Dice (GM, WM)</text>')
    series: dict[tuple, list[dict]] = {}
    for r in plain:
        series.setdefault((r["data"], None if math.isinf(r["target_epsilon"]) else r["max_grad_norm"]), []).append(r)
    legend = [width - right + 10, top + 10]  # x, next y
    for i, (data, clip) in enumerate(sorted({k for k in series if k[1] is not None}, key=str)):
        colour = colours[i % len(colours)]
        points = sorted(series[(data, clip)] + series.get((data, None), []), key=lambda r: xs[r["target_epsilon"]])
        path = " ".join(f"{px(r['target_epsilon']):.1f},{py(r['mean_dice']):.1f}" for r in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{px(r["target_epsilon"]):.1f}" cy="{py(r["mean_dice"]):.1f}" r="4" fill="{colour}"/>' for r in points]
        out.append(_legend(legend, colour, f"{data}, C {clip:g}"))
    for j, data in enumerate(sorted({r["data"] for r in rows})):
        for kind, dash in (("none", "6,4"), ("distill", "2,3")):
            level = [r for r in rows if r["data"] == data and r["kind"] == kind]
            if level:
                y, colour = py(level[0]["mean_dice"]), ["#555", "#aaa"][j % 2]
                out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-dasharray="{dash}"/>')
                out.append(_legend(legend, colour, f"{data}, {'undefended' if kind == 'none' else 'distilled'}", dash))
    out.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#333"/>')
    return "\n".join(out + ["</svg>"]) + "\n"


def _text(x: float, y: float, text: str, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{text}</text>'


def _legend(at: list, colour: str, text: str, dash: str | None = None) -> str:
    """One legend entry (a line sample and its text) at `at`, which then moves one row down."""
    x, y = at
    at[1] += 18
    style = f' stroke-dasharray="{dash}"' if dash else ' stroke-width="2"'
    return f'<line x1="{x}" x2="{x + 20}" y1="{y}" y2="{y}" stroke="{colour}"{style}/>' + _text(x + 25, y + 4, text)


if __name__ == "__main__":
    main()
