"""Split cases into train / val / test: by a seed, or from a split file. A case is one unit: never in two splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from psf.data.dataset import SPLITS, DatasetError


def split_by_seed(cases: list[str], val: float, test: float, seed: int) -> dict[str, list[str]]:
    """Shuffle the sorted case names with `seed` and cut val and test off the front (each at least one case when
    its fraction is above 0 and enough cases exist); the same names and seed give the same split on any machine."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DatasetError(f"--val {val} and --test {test}: each must be in [0, 1) and together below 1")
    names = sorted(cases)
    n = len(names)
    n_val = max(1, round(val * n)) if val > 0 else 0
    n_test = max(1, round(test * n)) if test > 0 else 0
    if n - n_val - n_test < 1:
        raise DatasetError(f"{n} cases cannot give {n_val} validation and {n_test} test cases and still train; "
                           "lower --val/--test or add cases")
    order = [names[i] for i in np.random.default_rng(seed).permutation(n)]
    return {"test": sorted(order[:n_test]), "val": sorted(order[n_test : n_test + n_val]),
            "train": sorted(order[n_test + n_val :])}


def split_from_file(path: Path, cases: list[str]) -> dict[str, list[str]]:
    """{"train": [...], "val": [...], "test": [...]} or nnU-Net's splits_final.json (a list of folds; fold 0 is
    used, its "val" becomes psf's val). Every case must be listed once, and only known cases."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"--split-file {path}: not readable JSON ({exc})") from exc
    if isinstance(raw, list):
        if not raw or not isinstance(raw[0], dict):
            raise DatasetError(f"--split-file {path}: a list, but not nnU-Net's folds [{{'train': [...], 'val': [...]}}, ...]")
        raw = raw[0]
    if not isinstance(raw, dict) or not set(raw) <= set(SPLITS) or "train" not in raw:
        raise DatasetError(f"--split-file {path}: expected {{'train': [...], 'val': [...], 'test': [...]}} or nnU-Net's splits_final.json")
    known, seen = set(cases), {}
    for split in SPLITS:
        for case in raw.get(split, []):
            case = str(case)
            if case not in known:
                raise DatasetError(f"--split-file {path}: case {case!r} ({split}) is not in the data set")
            if case in seen:
                raise DatasetError(f"--split-file {path}: case {case!r} is in both {seen[case]} and {split}")
            seen[case] = split
    missing = sorted(known - set(seen))
    if missing:
        raise DatasetError(f"--split-file {path}: {len(missing)} case(s) in no split, e.g. {missing[0]!r}; list every case")
    return {split: sorted(str(c) for c in raw.get(split, [])) for split in SPLITS}
