"""psf-audit: every attack of the threat model (../shared/DESIGN.md section 6) on one model and data set,
each next to the baseline that needs no latent at all.

Roles: the attacker is the honest-but-curious server. It sees image latents z_x of every slice (and,
during training, the encoded pairs), it may obtain k leaked (slice, latent) pairs, a decoder of another
center, and public images of the same modality. Latents here are exactly what the client sends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from psf.privacy import inversion, membership, probe
from psf.privacy.reference import map_losses, out_of_fold_losses
from psf.privacy.similarity import mean_foreground_dice, summary
from psf.progress import stderr

# Shares of the time budget (the rest goes to encoding, probes and scoring).
SHARES = {"invert_image": {10: 0.05, 100: 0.09, "all": 0.19}, "invert_mask": {10: 0.03, 100: 0.04, "all": 0.07},
          "leaked_decoder": 0.16, "reference_map": 0.12}  # reference_map: each of the two reference nets
KS = (10, 100, "all")


@dataclass(frozen=True)
class AuditOptions:
    model: Path
    data: Path
    out: Path
    baseline: Path | None = None
    minutes: float = 12.0
    seed: int = 0
    threads: int | None = None
    quiet: bool = False
    key: Path | None = None  # the consortium key the model was trained with: the server sees keyed latents


@dataclass
class Encoded:
    """One split as the server sees it (z_x, z_y) next to what it must not see (images, labels)."""

    images: torch.Tensor   # (n, 1, S, S)
    labels: torch.Tensor   # (n, S, S) long
    valid: np.ndarray      # (n, S, S) bool
    z_image: torch.Tensor
    z_mask: torch.Tensor
    positions: np.ndarray | None = None  # world mm along the slice axis (membership: same anatomy on both sides)
    volumes: np.ndarray | None = None    # source scan of each slice (membership is reported per held-out scan)


@torch.no_grad()
def encode_split(nets, split, key=None) -> Encoded:
    """The split's latents exactly as the client sends them (keyed when the model uses a consortium key)."""
    from psf.train.augment import one_hot

    x, y = torch.from_numpy(split.images), torch.from_numpy(split.labels).long()
    zx = torch.cat([nets.image_encoder(x[i : i + 32]) for i in range(0, len(x), 32)])
    zy = torch.cat([nets.mask_encoder(one_hot(y[i : i + 32], nets.config.num_classes)) for i in range(0, len(y), 32)])
    if key is not None:
        zx, zy = key.image.forward_module()(zx), key.mask.forward_module()(zy)
    return Encoded(x, y, split.valid, zx, zy, split.positions, split.volumes)


def _mean_dice(metrics: dict | None) -> float | None:
    """The checkpoint's mean test Dice over the foreground labels, as psf.metrics.report computed it when the
    model was trained (one Dice implementation; any label names, not only the demo's "other" background)."""
    return metrics["test"]["mean_dice"] if metrics else None


def run_audit(opts: AuditOptions) -> dict:
    from psf.pipeline.preprocess import DEFAULT_NORMALIZATION
    from psf.privacy.report import dp_text
    from psf.train.dp import privacy_summary
    from psf.train.checkpoint import load_checkpoint
    from psf.train.data import load_split

    baseline_metrics = _baseline_metrics(opts.baseline)  # a wrong --baseline fails now, not after the attacks
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    started = time.perf_counter()
    budget = opts.minutes * 60
    nets, ckpt = load_checkpoint(opts.model)
    cfg = nets.config
    key = _key(opts, ckpt)
    norm = ckpt.get("normalization", DEFAULT_NORMALIZATION)
    splits = {s: load_split(opts.data, s, cfg.image_size, norm) for s in ("train", "val", "test")}
    enc = {s: encode_split(nets, d, key) for s, d in splits.items()}
    train, val, test = enc["train"], enc["val"], enc["test"]
    stderr.print(f"audit: {opts.model} on {opts.data} (train {len(train.images)}, val {len(val.images)}, "
                 f"test {len(test.images)} slices), budget {opts.minutes:g} min")
    report: dict = {"model": str(opts.model), "data": str(opts.data), "budget_minutes": opts.minutes,
                    "key_id": key.key_id if key else None,
                    "membership_defense": ckpt.get("training", {}).get("options", {}).get("membership_defense", "none"),
                    "dp": privacy_summary(ckpt.get("training"))}  # the mapping net's DP guarantee, or None
    recon: dict[str, np.ndarray] = {}

    # Baselines that need no latent: the mean training image; later, the inverter fed random latents.
    mean_image = train.images.mean(0, keepdim=True).expand_as(test.images).numpy()
    prior = summary(mean_image, test.images.numpy(), test.valid)
    report["prior_ssim"], report["prior_psnr"] = prior["ssim"], prior["psnr"]
    recon["mean image (prior)"] = mean_image

    # a. Known-plaintext inversion of image latents, k leaked training pairs.
    rows = []
    order = torch.randperm(len(train.images), generator=gen)
    inverters = {}
    for k in KS:
        idx = order if k == "all" else order[:k]
        net = inversion.train_inverter(cfg, train.z_image[idx], train.images[idx], budget * SHARES["invert_image"][k],
                                       "image", gen, opts.quiet)
        out = inversion.apply(net, test.z_image, "image")
        rows.append({"k": len(idx) if k == "all" else k, **summary(out, test.images.numpy(), test.valid)})
        recon[f"inversion k={rows[-1]['k']}"] = out
        inverters[k] = net
        stderr.print(f"  inversion, k={rows[-1]['k']}: SSIM {rows[-1]['ssim']:.3f}, PSNR {rows[-1]['psnr']:.1f} dB")
    report["inversion"] = rows
    random_z = torch.clamp(train.z_image.mean(0) + train.z_image.std(0) * torch.randn(test.z_image.shape, generator=gen), -1, 1)
    report["random_latent"] = summary(inversion.apply(inverters["all"], random_z, "image"), test.images.numpy(), test.valid)

    # b. Leaked decoder: another center trained its own image autoencoder (its data: the val split, its seed);
    #    with a consortium key also this model's own decoder, without the key or with another one.
    report["leaked_decoder"] = _leaked_decoder(cfg, nets, key, train, val, test, budget * SHARES["leaked_decoder"], opts, recon)
    report["leaked_decoder_ssim"] = report["leaked_decoder"]["ssim"]

    # c. Membership inference against the mapping net.
    report["membership"] = _membership(nets, train, val, test, budget * SHARES["reference_map"], opts, gen)
    report["membership_auc"] = membership.headline_auc(report["membership"], ("loss_threshold", "reference_model"))
    report["membership_auc_all_members"] = membership.headline_auc(report["membership"]["all_members"],
                                                                   ("loss_threshold", "reference_model"))
    stderr.print(f"  membership AUC {report['membership_auc']:.3f} | {dp_text(report['dp'])}")

    # d. Encoded-data analysis: a linear probe fitted on the same k leaked pairs, and channel statistics.
    probes = []
    for k in KS:
        idx = order if k == "all" else order[:k]
        linear = probe.apply_probe(probe.fit_probe(train.z_image[idx], train.images[idx], cfg.patch), test.z_image, cfg.patch,
                                     cfg.in_channels)
        probes.append({"k": len(idx) if k == "all" else k, **summary(linear, test.images.numpy(), test.valid)})
        if k == 10:
            recon["linear probe k=10"] = linear
    report["linear_probe"] = probes
    stderr.print("  linear probe: " + ", ".join("k={} SSIM {:.3f}".format(p["k"], p["ssim"]) for p in probes))
    report["latent_channels"] = {"image": probe.channel_statistics(test.z_image, test.images, cfg.patch)}

    # e. The same attacks on encoded masks (z_y): Dice of what the attacker recovers.
    report["mask"] = _mask_attacks(cfg, train, test, budget, opts, gen)
    report["latent_channels"]["mask"] = probe.channel_statistics(
        test.z_mask, F.one_hot(test.labels, cfg.num_classes).permute(0, 3, 1, 2).float(), cfg.patch)

    # The accuracy side: what privacy costs against a plain U-Net with the same budget.
    report["dice_privacy"] = _mean_dice(ckpt.get("metrics"))
    report["dice_unet"] = _mean_dice(baseline_metrics)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["_recon"] = recon  # for the figure; dropped before JSON
    report["_truth"] = test.images.numpy()
    return report


def _key(opts: AuditOptions, ckpt: dict):
    from psf.models.key import ConsortiumKey, require_key

    key = ConsortiumKey.load(opts.key) if opts.key else None
    require_key(key, ckpt.get("key_id"), str(opts.model))
    return key


def _leaked_decoder(cfg, nets, key, train: Encoded, val: Encoded, test: Encoded, seconds: float, opts: AuditOptions,
                    recon: dict) -> dict:
    """A decoder that is not this client's, or is but without its key, on this client's latents.

    Without a key: another center's image decoder. With a consortium key, the attacks that lack the key
    (the headline figure is the best of them): another center's decoder behind its own, different key;
    this model's own image decoder (leaked) fed the keyed latents as they are, or behind a guessed key.
    Reported beside them, not in the headline: a consortium member's decoder, which holds the key.
    A decoder's output may carry the anatomy with other (even inverted) intensities, which SSIM punishes;
    so each attack also gets one global intensity map a*x + b fitted on 10 leaked training slices.
    The headline (ssim, psnr, after_intensity_fit_k10) is the attacker's best of the keyless attacks,
    taken separately for the raw and the intensity-fitted output."""
    from psf.models import build_networks
    from psf.models.key import ConsortiumKey
    from psf.train.loop import Budget
    from psf.train.stages import StageOptions, train_image_autoencoder
    from psf.train.views import Views

    other = build_networks(cfg)
    other_gen = torch.Generator().manual_seed(opts.seed + 1000)
    torch.manual_seed(opts.seed + 1000)
    views = Views(val.images.numpy(), val.labels.to(torch.uint8).numpy(), cfg.num_classes, 6, other_gen)
    log = train_image_autoencoder(other, views, StageOptions(Budget(seconds=seconds), batch_size=16,
                                                              crop=cfg.image_size // 2, quiet=opts.quiet), other_gen)
    other.eval()
    if key is None:
        attacks = {"another center's decoder": other.image_decoder}
        without_key = list(attacks)
    else:
        guess = ConsortiumKey.generate(cfg.image_latent, cfg.mask_latent, seed=opts.seed + 2000).image.inverse_module()
        attacks = {
            "another center's decoder, its own key": lambda z: other.image_decoder(guess(z)),
            "own decoder, no key": nets.image_decoder,
            "own decoder, a guessed key": lambda z: nets.image_decoder(guess(z)),
            "another center's decoder, same key (a member)": lambda z: other.image_decoder(key.image.inverse_module()(z)),
        }
        without_key = list(attacks)[:3]
    results = {}
    with torch.no_grad():
        own = torch.cat([other.image_decoder(other.image_encoder(test.images[i : i + 32])) for i in range(0, len(test.images), 32)])
        for name, decode in attacks.items():
            out = torch.cat([decode(test.z_image[i : i + 32]) for i in range(0, len(test.images), 32)]).numpy()
            leaked_train = decode(train.z_image[:10]).numpy()
            result = summary(out, test.images.numpy(), test.valid)
            valid, fitted = train.valid[:10], np.empty_like(out)
            for c in range(out.shape[1]):  # one intensity map a*x + b per channel (MR sequences differ)
                a, b = np.polyfit(leaked_train[:, c][valid], train.images[:10, c].numpy()[valid], 1)
                fitted[:, c] = a * out[:, c] + b
            result["after_intensity_fit_k10"] = summary(fitted, test.images.numpy(), test.valid)
            results[name] = result
            recon[f"leaked: {name}"] = out
    report = {**headline(results, without_key), "attacks": results,
              "other_center_own_reconstruction": summary(own.numpy(), test.images.numpy(), test.valid),
              "other_center_steps": log["steps"]}
    for name, result in results.items():
        stderr.print(f"  leaked decoder ({name}): SSIM {result['ssim']:.3f}, after an intensity fit on 10 leaked slices "
                     f"{result['after_intensity_fit_k10']['ssim']:.3f}")
    stderr.print(f"  (that other center on its own latents: {report['other_center_own_reconstruction']['ssim']:.3f})")
    return report


def headline(results: dict, names: list[str]) -> dict:
    """The best raw result and, separately, the best intensity-fitted one among `names`, each with its attack."""
    raw = max(names, key=lambda n: results[n]["ssim"])
    fitted = max(names, key=lambda n: results[n]["after_intensity_fit_k10"]["ssim"])
    return {**{k: v for k, v in results[raw].items() if k != "after_intensity_fit_k10"}, "attack": raw,
            "after_intensity_fit_k10": {**results[fitted]["after_intensity_fit_k10"], "attack": fitted}}


def _membership(nets, train: Encoded, val: Encoded, test: Encoded, seconds: float, opts: AuditOptions, gen) -> dict:
    """Loss-threshold and reference-model attacks on the mapping net (membership.membership_game).

    A membership game is fair only when members and non-members come from one distribution. On the demo,
    loss follows anatomy tenfold (the first and last blocks, near-empty slices, are all training slices),
    so the headline compares each held-out slice with the training slices within 10 mm of it; the
    reference nets are out of fold (psf.privacy.reference), so they sit as near to members as to non-members."""
    encoded = {"train": train, "val": val, "test": test}
    target = {s: map_losses(nets.mapping, e) for s, e in encoded.items()}
    reference = out_of_fold_losses(nets.config, encoded, seconds, gen, opts.quiet)
    shared = membership.shared_records({s: membership.record_keys(e.images.numpy(), e.labels.numpy()) for s, e in encoded.items()})
    report = membership.membership_game(target, reference, {s: e.positions for s, e in encoded.items()}, shared=shared,
                                        volumes={s: e.volumes for s, e in encoded.items()})
    all_members = report["all_members"]
    stderr.print(f"  membership, same anatomy (+-{membership.RADIUS_MM:g} mm): loss threshold AUC {report['loss_threshold']['auc']:.3f}, "
                 f"reference model {report['reference_model']['auc']:.3f}, blind baseline {report['blind_baseline']['auc']:.3f}; "
                 f"one global threshold: {all_members['loss_threshold']['auc']:.3f} / {all_members['reference_model']['auc']:.3f}; "
                 f"left out, on both sides: {report['shared_records_excluded']}")
    return {**report, "mean_loss": {k: round(float(v.mean()), 6) for k, v in target.items()}}


def _mask_attacks(cfg, train: Encoded, test: Encoded, budget: float, opts: AuditOptions, gen) -> dict:
    truth = test.labels.numpy()
    order = torch.randperm(len(train.labels), generator=gen)
    rows = []
    for k in KS:
        idx = order if k == "all" else order[:k]
        net = inversion.train_inverter(cfg, train.z_mask[idx], train.labels[idx], budget * SHARES["invert_mask"][k],
                                       "mask", gen, opts.quiet)
        pred = inversion.apply(net, test.z_mask, "mask")
        rows.append({"k": len(idx) if k == "all" else k, "dice": mean_foreground_dice(pred, truth, test.valid, cfg.num_classes)})
    one_hot = lambda y: F.one_hot(y, cfg.num_classes).permute(0, 3, 1, 2).float()  # noqa: E731
    probes = []
    for k in KS:
        idx = order if k == "all" else order[:k]
        weights = probe.fit_probe(train.z_mask[idx], one_hot(train.labels[idx]), cfg.patch)
        linear = probe.apply_probe(weights, test.z_mask, cfg.patch, cfg.num_classes).argmax(1)
        probes.append({"k": len(idx) if k == "all" else k, "dice": mean_foreground_dice(linear, truth, test.valid, cfg.num_classes)})
    # Prior: every test pixel gets the label the training set has most often at that position.
    counts = one_hot(train.labels).sum(0)
    prior = np.broadcast_to(counts.argmax(0).numpy(), truth.shape)
    result = {"inversion": rows, "linear_probe": probes,
              "prior_dice": mean_foreground_dice(prior, truth, test.valid, cfg.num_classes)}
    inverted = ", ".join("k={} {:.3f}".format(r["k"], r["dice"]) for r in rows)
    stderr.print(f"  masks: inversion Dice {inverted}; "
                 f"linear probe k=10 {probes[0]['dice']:.3f}, all {probes[-1]['dice']:.3f}; prior {result['prior_dice']:.3f}")
    return result


def _baseline_metrics(path: Path | None) -> dict | None:
    if path is None:
        return None
    from psf.errors import PsfError

    if not Path(path).is_file():
        raise PsfError(f"--baseline {path}: no such file; train one with: psf-train DATA/ --baseline unet -o {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "psf-unet/1":
        raise PsfError(f"--baseline {path}: not a U-Net baseline from psf-train --baseline unet")
    return ckpt["metrics"]
