"""psf score: Dice/IoU of predicted masks against reference labels (files matched by name)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, reports_errors


def score(
    predictions: Annotated[Path, typer.Argument(help="Folder of masks written by psf-infer (<stem>_mask.*).")],
    truth: Annotated[Path, typer.Argument(help="Folder of reference label files (<stem>.*).")],
    labels: Annotated[str, typer.Option(help="Comma-separated label names, index order.")] = "other,grey_matter,white_matter",
    run_report: Annotated[Optional[Path], typer.Option(help="psf-infer --report JSON; adds its slice count and time.")] = None,
    prefix: Annotated[str, typer.Option(help="Text before the summary line.")] = "",
    debug: DebugOpt = False,
) -> None:
    """Print `test dice a=.. b=.. mean=..` (foreground classes; short names) for predictions vs truth."""
    reports_errors(_score)(predictions, truth, labels, run_report, prefix, debug=debug)


def short_name(label: str) -> str:
    """grey_matter -> gm: the initials of the words."""
    return "".join(word[0] for word in label.replace("-", "_").split("_") if word)


def _score(predictions: Path, truth: Path, labels: str, run_report: Path | None, prefix: str) -> None:
    import numpy as np

    from psf.errors import PsfError
    from psf.io import MASK_SUFFIX, find_scans, read_scan, scan_suffix
    from psf.metrics import confusion_counts, report

    names = labels.split(",")
    counts = np.zeros((len(names), 3), dtype=np.int64)
    pairs = 0
    for source in find_scans([truth]):
        truth_path = source.path
        suffix = scan_suffix(truth_path)
        stem = truth_path.name[: -len(suffix)]
        candidates = [predictions / f"{stem}_mask{s}" for s in MASK_SUFFIX.values()]
        pred_path = next((p for p in candidates if p.is_file()), None)
        if pred_path is None:
            raise PsfError(f"no prediction for {truth_path} in {predictions} (looked for {stem}_mask.*)")
        pred, ref = read_scan(pred_path).pixels, read_scan(truth_path).pixels
        if pred.shape != ref.shape:
            raise PsfError(f"{pred_path} has shape {pred.shape}, its reference {truth_path} {ref.shape}")
        counts += confusion_counts(np.rint(pred).astype(np.int64), np.rint(ref).astype(np.int64), len(names))
        pairs += 1
    if not pairs:
        raise PsfError(f"no reference label files in {truth}")
    result = report(counts, names)
    line = " ".join(f"{short_name(n)}={result['dice'][n]:.4f}" for n in names[1:])
    line = f"test dice {line} mean={result['mean_dice']:.4f}"
    if run_report:
        run = json.loads(run_report.read_text())
        line += f" | infer {run['slices']} slices in {run['seconds']:.2f} s"
    print(f"{prefix} {line}".strip())
