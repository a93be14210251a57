"""psf score: Dice/IoU of predicted masks against reference labels (files matched by name); with --report,
Dice and HD95 per case and label in JSON (psf.eval)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, reports_errors


@dataclass(frozen=True)
class ScoreOptions:
    predictions: Path
    truth: Path
    labels: str | None = None  # comma-separated; None: the data set's dataset.json, else the MNI152 demo's
    run_report: Path | None = None
    prefix: str = ""
    report: Path | None = None


def score(
    predictions: Annotated[Path, typer.Argument(help="Folder of masks written by psf-infer (<stem>_mask.*).")],
    truth: Annotated[Path, typer.Argument(help="Folder of reference label files (<stem>.*).")],
    labels: Annotated[Optional[str], typer.Option(
        help="Comma-separated label names, index order (background first). Default: the labels of the data set's "
             "dataset.json (in TRUTH or one or two folders up), else other,grey_matter,white_matter.")] = None,
    run_report: Annotated[Optional[Path], typer.Option(help="psf-infer --report JSON; adds its slice count and time.")] = None,
    prefix: Annotated[str, typer.Option(help="Text before the summary line.")] = "",
    report: Annotated[Optional[Path], typer.Option(
        help="Write Dice and HD95 (mm, from the files' voxel spacing) per case and label, and their means, "
             "to this JSON file. HD95 needs medpy: the eval extra.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Print `test dice a=.. b=.. mean=..` (foreground classes; short names) for predictions vs truth;
    --report adds Dice and HD95 per case and label in JSON."""
    reports_errors(_score)(ScoreOptions(predictions, truth, labels, run_report, prefix, report), debug=debug)


def short_name(label: str) -> str:
    """grey_matter -> gm: the initials of the words."""
    return "".join(word[0] for word in label.replace("-", "_").split("_") if word)


def line_names(labels: list[str]) -> list[str]:
    """Short names for the summary line, or the full names where two labels would share one."""
    short = [short_name(n) for n in labels]
    return short if len(set(short)) == len(short) and all(short) else list(labels)


def _score(opts: ScoreOptions) -> None:
    import numpy as np

    from psf.errors import PsfError
    from psf.eval import case_report, check_label_values, summarize
    from psf.eval.cases import label_names, read_cases
    from psf.metrics import confusion_counts, hd95_implementation, report

    names, names_from = label_names(opts.truth, opts.labels)
    if opts.report:
        hd95_implementation()  # a missing medpy fails now, not after every case was read
    counts = np.zeros((len(names), 3), dtype=np.int64)
    cases: dict[str, dict] = {}
    for case in read_cases(opts.predictions, opts.truth):
        check_label_values(case.pred, names, str(case.pred_path))
        check_label_values(case.truth, names, str(case.truth_path))
        counts += confusion_counts(case.pred, case.truth, len(names))
        key = case.name if case.name not in cases else str(case.truth_path.relative_to(opts.truth))
        cases[key] = {"prediction": str(case.pred_path), "reference": str(case.truth_path),
                      **(case_report(case.pred, case.truth, names, case.spacing, unit=case.unit) if opts.report else {})}
    if not cases:
        raise PsfError(f"no reference label files in {opts.truth}")
    result = report(counts, names)
    line = " ".join(f"{short}={result['dice'][n]:.4f}" for short, n in zip(line_names(names[1:]), names[1:]))
    line = f"test dice {line} mean={result['mean_dice']:.4f}"
    if opts.run_report:
        run = json.loads(opts.run_report.read_text())
        line += f" | infer {run['slices']} slices in {run['seconds']:.2f} s"
    if opts.report:
        _write_report(opts, summarize(cases, names), names_from, result, f"{opts.prefix} {line}".strip())
    print(f"{opts.prefix} {line}".strip())


def _write_report(opts: ScoreOptions, summary: dict, names_from: str, pooled: dict, line: str) -> None:
    from psf.eval import write_report

    head = {"predictions": str(opts.predictions), "references": str(opts.truth), "labels_from": names_from,
            "pooled": pooled, "line": line}
    document = {"format": summary["format"], **head, **summary}  # where from first, the cases last
    write_report(opts.report, document)
