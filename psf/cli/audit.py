"""psf-audit: attack the latents and the mapping net of a trained model; JSON + Markdown + PNG report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors


def audit(
    model: Annotated[Path, typer.Argument(help="model.pt from psf-train.")],
    data: Annotated[Path, typer.Argument(help="Data set folder (train/val/test), as psf data mni152 writes it.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for audit.json, audit.md and audit.png.")] = Path("audit"),
    baseline: Annotated[Optional[Path], typer.Option(help="U-Net checkpoint from psf-train --baseline unet: adds dice_unet.")] = None,
    minutes: Annotated[float, typer.Option(help="Time budget for all attacks together (training the attackers' networks).")] = 12.0,
    seed: Annotated[int, typer.Option(help="Seed for the attackers' choices and networks.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads (default: all cores).")] = None,
    key: Annotated[Optional[Path], typer.Option(help="The consortium key the model was trained with (psf-train --key); adds the wrong-key decoder attacks.")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Known-plaintext inversion (k = 10, 100, all), leaked decoder, membership inference, linear probe,
    mask inversion; each next to its prior-only baseline."""
    reports_errors(_audit)(model, data, out, baseline, minutes, seed, threads, key, quiet, debug=debug)


def _audit(model, data, out, baseline, minutes, seed, threads, key, quiet) -> None:
    from psf.errors import UsageError
    from psf.privacy.audit import AuditOptions, run_audit
    from psf.privacy.report import dp_text, write_reports

    if minutes <= 0:
        raise UsageError(f"--minutes must be > 0, got {minutes}")
    report = run_audit(AuditOptions(model=model, data=data, out=out, baseline=baseline, minutes=minutes, seed=seed,
                                    threads=threads, quiet=quiet, key=key))
    paths = write_reports(report, out)

    inverted = ", ".join("k={} {:.3f}".format(r["k"], r["ssim"]) for r in report["inversion"])
    print(f"audit: prior SSIM {report['prior_ssim']:.3f} | inversion SSIM "
          f"{inverted} | leaked decoder "
          f"{report['leaked_decoder_ssim']:.3f} | membership AUC {report['membership_auc']:.3f} ({dp_text(report['dp'])}) | "
          f"Dice privacy {report['dice_privacy']} U-Net {report['dice_unet']} | {report['seconds']:.0f} s | {paths['json']}")

