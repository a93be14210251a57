"""Per-case, per-label Dice and HD95, and their means over cases: the evaluation report of `psf score
--report` and of `psf-train`.

Empty masks are explicit, never a silent 0 or 1:
- Dice is undefined (None) when prediction and reference of a label are both empty, as nnU-Net v2 does
  (it records NaN and leaves the case out of the label's mean);
- HD95 is undefined (None) when either is empty (a distance to an empty set; medpy refuses it, MONAI
  gives inf or NaN with a warning).
Each None comes with its reason under "undefined", and the means say how many cases they skipped, so a
label the model never predicts shows up as counts rather than disappearing. JSON has no NaN or inf:
None is written as null.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from psf.errors import UsageError
from psf.metrics import case_dice, confusion_counts, hd95 as hd95_distance, hd95_implementation

FORMAT = "psf-eval/1"
CONVENTIONS = {
    "dice": "per case and label 2TP/(2TP+FP+FN); null when prediction and reference are both empty "
            "(nnU-Net v2 convention: NaN, left out of the mean)",
    "hd95": "95th percentile of the surface distances of both directions pooled (medpy.metric.binary.hd95, "
            "surfaces by 1-connectivity erosion), in the unit of the files' voxel spacing; null when either "
            "mask is empty (undefined; MONAI would give inf or NaN)",
    "means": "over the cases where the value is defined; *_cases counts them and 'undefined' counts the rest by reason",
    "labels": "foreground labels only (label 0 is background); singleton axes are dropped, so a 2D image is scored in 2D",
}


def check_label_values(values: np.ndarray, labels: Sequence[str], source: str) -> None:
    """Refuse a label map with values outside 0..len(labels)-1: confusion counts would mix them up silently."""
    values = np.asarray(values)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high >= len(labels):
        bad = low if low < 0 else high
        raise UsageError(f"{source} has label value {bad}, but {len(labels)} labels are known ({','.join(labels)}); "
                         f"pass the data set's label names with --labels")


def case_report(pred: np.ndarray, truth: np.ndarray, labels: Sequence[str], spacing: Sequence[float], *,
                hd95: bool = True, unit: str = "mm") -> dict:
    """Dice and HD95 of each foreground label of one case.

    pred, truth: integer label maps of the same shape (2D or 3D, voxel order matching `spacing`), values
    0..len(labels)-1, labels[0] the background. spacing: size of a voxel along each axis, in `unit` (mm from
    the files' geometry; "pixel" for plain 2D images). hd95=False skips the distances (no medpy needed).
    Returns {"shape", "spacing", "unit", "labels": {name: {"dice", "hd95", "voxels_pred", "voxels_ref"[,
    "undefined": {metric: reason}]}}}, JSON-safe (None, never NaN or inf).
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or len(spacing) != truth.ndim:
        raise UsageError(f"prediction shape {pred.shape}, reference shape {truth.shape} and spacing "
                         f"{tuple(spacing)} disagree")
    check_label_values(pred, labels, "the prediction")
    check_label_values(truth, labels, "the reference")
    shape = [int(n) for n in truth.shape]
    keep = [axis for axis, n in enumerate(shape) if n > 1] or list(range(truth.ndim))
    squeezed = tuple(shape[axis] for axis in keep)
    pred, truth = pred.reshape(squeezed).astype(np.int64), truth.reshape(squeezed).astype(np.int64)
    kept_spacing = [float(spacing[axis]) for axis in keep]
    counts = confusion_counts(pred, truth, len(labels))
    dice = case_dice(counts)
    rows = {}
    for index, name in enumerate(labels[1:], start=1):
        in_pred, in_truth = int(counts[index, 0] + counts[index, 1]), int(counts[index, 0] + counts[index, 2])
        row: dict = {"dice": _round(dice[index])}
        undefined = {"dice": "both empty"} if dice[index] is None else {}
        if hd95:
            reason = _empty_reason(in_pred, in_truth)
            row["hd95"] = None if reason else _round(hd95_distance(pred == index, truth == index, kept_spacing))
            undefined.update({"hd95": reason} if reason else {})
        row.update(voxels_pred=in_pred, voxels_ref=in_truth)
        if undefined:
            row["undefined"] = undefined
        rows[name] = row
    return {"shape": shape, "spacing": [round(float(s), 6) for s in spacing], "unit": unit, "labels": rows}


def summarize(cases: Mapping[str, dict], labels: Sequence[str]) -> dict:
    """Means over cases of each foreground label (skipping undefined values, which are counted by reason),
    their mean over labels, the conventions and the implementation used, and the cases themselves."""
    hd95_done = any("hd95" in row for case in cases.values() for row in case["labels"].values())
    means = {}
    for name in labels[1:]:
        rows = [case["labels"][name] for case in cases.values()]
        entry: dict = {}
        undefined: dict = {}
        for metric in ("dice", "hd95") if hd95_done else ("dice",):
            values = [row[metric] for row in rows if row.get(metric) is not None]
            entry[metric] = _round(float(np.mean(values)), 4) if values else None
            entry[f"{metric}_cases"] = len(values)
            reasons = Counter(row["undefined"][metric] for row in rows if metric in row.get("undefined", {}))
            if reasons:
                undefined[metric] = dict(sorted(reasons.items()))
        if undefined:
            entry["undefined"] = undefined
        means[name] = entry
    foreground = {}
    for metric in ("dice", "hd95") if hd95_done else ("dice",):
        values = [m[metric] for m in means.values() if m[metric] is not None]
        foreground[metric] = _round(float(np.mean(values)), 4) if values else None
    return {"format": FORMAT, "labels": list(labels), "conventions": CONVENTIONS,
            "hd95_implementation": hd95_implementation() if hd95_done else None,
            "mean": means, "mean_foreground": foreground, "cases": dict(cases)}


def write_report(path: str | Path, document: Mapping) -> Path:
    """Write a report as indented JSON, atomically (a crash leaves the old file or the new one); NaN or inf
    in it is a bug (JSON has neither), so it raises ValueError instead of writing invalid JSON."""
    from psf.io.atomic import write_text_atomic

    return write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def _empty_reason(in_pred: int, in_truth: int) -> str | None:
    if not in_pred and not in_truth:
        return "both empty"
    if not in_pred:
        return "prediction empty"
    if not in_truth:
        return "reference empty"
    return None


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)
