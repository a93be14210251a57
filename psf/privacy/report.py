"""The audit's outputs: audit.json, audit.md (tables with their baselines) and audit.png (originals next
to what each attack reconstructs, same test slices)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from psf.io.atomic import write_atomic, write_text_atomic

TARGETS = {"leaked_decoder_margin": 0.05, "membership_auc": 0.55}


def verdicts(report: dict) -> dict:
    """The issue's targets, checked against the measured figures (True = met)."""
    out = {"leaked_decoder_ssim_within_prior_plus_0.05": report["leaked_decoder_ssim"] <= report["prior_ssim"] + TARGETS["leaked_decoder_margin"],
           "leaked_decoder_ssim_after_intensity_fit_within_prior_plus_0.05":
               report["leaked_decoder"]["after_intensity_fit_k10"]["ssim"] <= report["prior_ssim"] + TARGETS["leaked_decoder_margin"],
           "membership_auc_at_most_0.55": report["membership_auc"] <= TARGETS["membership_auc"]}
    if report.get("dice_unet") is not None and report.get("dice_privacy") is not None:
        out["dice_privacy_at_least_unet"] = report["dice_privacy"] >= report["dice_unet"]
    return out


def dp_text(dp: dict | None) -> str:
    """The mapping net's DP guarantee in words, from its training log (psf.train.dp.privacy_summary)."""
    if not dp:
        return "no DP guarantee"
    if dp.get("epsilon") is None:
        return f"DP-SGD without noise (target epsilon {dp.get('target_epsilon')}): no DP guarantee"
    return f"DP epsilon {dp['epsilon']:g} at delta {dp['delta']:.2g} per {dp.get('unit', 'slice')}"


def write_reports(report: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    recon, truth = report.pop("_recon"), report.pop("_truth")
    report["targets"] = verdicts(report)
    paths = {"json": write_text_atomic(out / "audit.json", json.dumps(report, indent=2) + "\n"),
             "markdown": write_text_atomic(out / "audit.md", markdown(report)),
             "png": out / "audit.png"}
    write_atomic(paths["png"], lambda tmp: _figure(truth, recon).save(tmp, format="PNG"))
    return paths


def markdown(r: dict) -> str:
    keyed = f"consortium key {r['key_id']}" if r.get("key_id") else "no consortium key"
    defense = f"membership defense: {r.get('membership_defense', 'none')} ({dp_text(r.get('dp'))})"
    lines = [f"# Privacy audit of {r['model']}", "", f"Data: {r['data']}; {keyed}; {defense}; budget {r['budget_minutes']} min, "
             f"took {r['seconds']} s. Leaked-decoder headline: the best keyless attack ({r['leaked_decoder']['attack']}; "
             f"after an intensity fit: {r['leaked_decoder']['after_intensity_fit_k10'].get('attack', r['leaked_decoder']['attack'])}).", "",
             "## Images: what an attacker recovers from z_image (test slices; SSIM over real pixels)", "",
             "| attack | SSIM | PSNR dB |", "|---|---|---|",
             f"| prior only: the mean training image | {r['prior_ssim']} | {r['prior_psnr']} |",
             f"| inverter fed random latents | {r['random_latent']['ssim']} | {r['random_latent']['psnr']} |"]
    lines += [f"| known-plaintext inversion, k={row['k']} leaked pairs | {row['ssim']} | {row['psnr']} |" for row in r["inversion"]]
    for name, leaked in r["leaked_decoder"]["attacks"].items():
        lines.append(f"| leaked decoder: {name} | {leaked['ssim']} | {leaked['psnr']} |")
        lines.append(f"| leaked decoder: {name}, + intensity map fitted on 10 leaked slices | "
                     f"{leaked['after_intensity_fit_k10']['ssim']} | {leaked['after_intensity_fit_k10']['psnr']} |")
    lines += [f"| linear probe (3x3 cells -> patch), k={row['k']} | {row['ssim']} | {row['psnr']} |" for row in r["linear_probe"]]
    lines += ["", "## Masks: Dice of what an attacker recovers from z_mask", "", "| attack | mean Dice GM/WM |", "|---|---|",
              f"| prior only: most frequent label per pixel | {r['mask']['prior_dice']} |"]
    lines += [f"| known-plaintext inversion, k={row['k']} | {row['dice']} |" for row in r["mask"]["inversion"]]
    lines += [f"| linear probe, k={row['k']} | {row['dice']} |" for row in r["mask"]["linear_probe"]]
    lines += ["", "## Membership inference against the mapping net", "",
              f"Headline AUC {r['membership_auc']} ({dp_text(r.get('dp'))}): the stronger attack, max(AUC, 1 - AUC), each held-out slice against the "
              f"training slices within {r['membership'].get('radius_mm')} mm of it (same anatomy); with one global threshold over "
              f"all slices {r['membership_auc_all_members']}. The reference model scores target loss minus the loss of a reference "
              "net that never trained on the slice (two nets, each on every other slice of all encoded pairs). The blind "
              "baseline scores by that reference loss alone, without the target: what anatomy and difficulty give away by "
              "themselves (near 0.5 when the game is fair). TPR at a fixed FPR needs "
              "one global threshold, so only those rows have it; neighbouring slices are alike, so the CIs are too narrow.", "",
              "| attack | compared with | AUC (95% bootstrap CI) | TPR at 1% FPR | TPR at 0.1% FPR | members / non-members |",
              "|---|---|---|---|---|---|"]
    m = r["membership"]
    for group, attacks in (("members of the same anatomy", m), ("one global threshold", m["all_members"])):
        for name in ("loss_threshold", "reference_model", "blind_baseline"):
            a = attacks[name]
            tpr = ["-" if a[k] is None else a[k] for k in ("tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")]
            lines.append(f"| {name.replace('_', ' ')} | {group} | {a['auc']} ({a['auc_ci95'][0]}-{a['auc_ci95'][1]}) | "
                         f"{tpr[0]} | {tpr[1]} | {a['members']} / {a['nonmembers']} |")
    excluded = m.get("shared_records_excluded", {})
    if excluded.get("members") or excluded.get("nonmembers"):
        lines += ["", f"Left out of every row: {excluded['members']} training and {excluded['nonmembers']} held-out slices whose "
                  "record (image and mask) is on both sides (blank slices): they are members and non-members at once."]
    if m.get("per_block"):
        lines += ["", "Same-anatomy AUC per held-out block (one block of neighbouring slices is one sample, not one per slice; "
                  "a blind baseline far from 0.5 says the block's neighbours differ from it in difficulty, so its attack "
                  "AUCs read anatomy as well as membership):", "",
                  "| held-out block | scan | mm | non-members | loss threshold | reference model | blind baseline |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {b['split']} | {b.get('scan', '-')} | {b['from_mm']} to {b['to_mm']} | {b['nonmembers']} | {b.get('loss_threshold')} | "
                  f"{b.get('reference_model')} | {b.get('blind_baseline')} |" for b in m["per_block"]]
    lines += ["", "## Latent channels (test slices)", "", "| latent | channel | mean | std | saturated | corr. with content |",
              "|---|---|---|---|---|---|"]
    for which, stats in r["latent_channels"].items():
        lines += [f"| {which} | {s['channel']} | {s['mean']} | {s['std']} | {s['saturated']} | {s['corr_with_content']} |" for s in stats]
    lines += ["", "## Accuracy", "", f"Mean test Dice (GM, WM): privacy pipeline {r['dice_privacy']}, U-Net {r['dice_unet']}.", "",
              "## Targets", ""]
    lines += [f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in r["targets"].items()]
    return "\n".join(lines) + "\n"


def _figure(truth: np.ndarray, recon: dict[str, np.ndarray], columns: int = 4, cell: int = 128):
    """Rows: the original, then one row per attack; columns: evenly spaced test slices."""
    from PIL import Image, ImageDraw

    content = [i for i in range(len(truth)) if truth[i].mean() > 0.05] or list(range(len(truth)))
    picks = [content[j] for j in np.linspace(0, len(content) - 1, columns).round().astype(int)]
    rows = [("original", truth)] + list(recon.items())
    label_w = 170
    canvas = Image.new("L", (label_w + columns * cell, len(rows) * cell), 0)
    draw = ImageDraw.Draw(canvas)
    for r, (name, images) in enumerate(rows):
        draw.text((6, r * cell + cell // 2 - 6), name, fill=255)
        for c, i in enumerate(picks):
            pixels = (np.clip(images[i, 0], 0, 1) * 255).astype(np.uint8)
            tile = Image.fromarray(pixels).resize((cell, cell), Image.BILINEAR)
            canvas.paste(tile, (label_w + c * cell, r * cell))
    return canvas
