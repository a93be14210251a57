"""psf-train's slice cache: each split preprocessed once into row files on disk, so training memory does not
grow with the number of cases and a second run (another seed, another budget) skips the reading.

A cache entry is keyed by everything that decides its contents: the data set's dataset.json, each file's
size and modification time, the model size, the normalization and the slice axis. It is built in a
temporary folder beside its final place and renamed when complete, so an interrupted build leaves nothing
that a later run would take for a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from psf.errors import PsfError
from psf.progress import stderr
from psf.train.data import SliceSet, case_slices, dataset_info, split_cases
from psf.train.rowfile import RowFile, RowWriter

VERSION = 1
CACHE_DIR_NAME = ".psf-cache"
ARRAYS = ("images", "labels", "valid")


def cache_root(data: Path, given: Path | None = None) -> Path:
    """--cache DIR, else DATA/.psf-cache when the data set folder is writable, else ~/.cache/psf."""
    if given is not None:
        return Path(given)
    inside = Path(data) / CACHE_DIR_NAME
    if os.access(Path(data), os.W_OK) or inside.is_dir():
        return inside
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "psf"


def scratch_folder(data: Path, given: Path | None = None) -> tempfile.TemporaryDirectory:
    """A temporary folder beside the slice cache for one run's augmented views and encoded pairs (it goes when
    the run ends, also on an error)."""
    root = cache_root(data, given)
    try:
        root.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix=".run-", dir=root)
    except OSError as exc:
        raise PsfError(f"cannot write in {root} ({exc.strerror}); give a writable folder with --cache DIR") from None


def cached_split(data: Path, split: str, size: int, normalization, axis: int = 2, info=None,
                 root: Path | None = None, quiet: bool = False) -> SliceSet:
    """The split as a SliceSet whose images, labels and valid masks are RowFiles on disk (built when missing)."""
    data = Path(data)
    info = info if info is not None else dataset_info(data)
    root = cache_root(data, root)
    entry = root / f"{split}-{_key(data, split, size, normalization, axis, info)}"
    if not (entry / "meta.json").is_file():
        _build(entry, data, split, size, normalization, axis, info, quiet)
    return _open(entry)


def _key(data: Path, split: str, size: int, normalization, axis: int, info) -> str:
    files = []
    for images, label in split_cases(data, split, info):
        for path in (*images, label):
            try:
                st = path.stat()
            except OSError:
                raise PsfError(f"{images[0]}: its file {path} is missing; rebuild the data set with psf data import") from None
            files.append((str(path.relative_to(data)), st.st_size, st.st_mtime_ns))
    dataset_json = data / "dataset.json"
    described = {"version": VERSION, "dataset": dataset_json.read_text() if dataset_json.is_file() else None,
                 "files": files, "size": size, "normalization": normalization, "axis": axis}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _build(entry: Path, data: Path, split: str, size: int, normalization, axis: int, info, quiet: bool) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    except OSError as exc:
        raise PsfError(f"cannot write the slice cache in {entry.parent} ({exc.strerror}); "
                       "give a writable folder with --cache DIR") from None
    try:
        writers, positions, volumes, cases = {}, [], [], []
        for number, part in enumerate(case_slices(data, split, size, normalization, axis, info)):
            for name in ARRAYS:
                rows = getattr(part, name)
                if name not in writers:
                    writers[name] = RowWriter(staging / f"{name}.rows", rows.dtype, rows.shape[1:])
                writers[name].append(rows)
            positions.append(part.positions)
            volumes.append(np.full(len(part.images), number, np.int32))
            cases.append(part.case)
        if not writers:
            raise PsfError(f"no cases in {data / split / 'images'}")
        for writer in writers.values():
            writer.close()
        known = all(p is not None for p in positions)
        np.save(staging / "volumes.npy", np.concatenate(volumes))
        if known:
            np.save(staging / "positions.npy", np.concatenate(positions))
        recipe = _recipe(split, size, normalization, axis)
        (staging / "meta.json").write_text(json.dumps({"version": VERSION, "split": split, "source": str(data.resolve()),
                                                       "recipe": recipe, "cases": cases}) + "\n")
        try:
            staging.rename(entry)
        except OSError:  # another process (a torchrun rank) finished the same entry first: keep theirs
            if not (entry / "meta.json").is_file():
                raise
        _drop_stale(entry, str(data.resolve()), recipe)
        if not quiet:
            stderr.print(f"cache: {split} split, {writers['images'].count} slices preprocessed into {entry}")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _recipe(split: str, size: int, normalization, axis: int) -> str:
    return hashlib.sha256(json.dumps([split, size, normalization, axis], sort_keys=True).encode()).hexdigest()[:16]


def _drop_stale(entry: Path, source: str, recipe: str) -> None:
    """Remove older entries of the same data set folder and recipe (its files changed since): one current entry per
    data set and preprocessing, so re-running `psf data ...` and psf-train does not fill the disk."""
    for other in entry.parent.iterdir():
        if other == entry or other.name.startswith(".") or not (other / "meta.json").is_file():
            continue
        try:
            meta = json.loads((other / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("source") == source and meta.get("recipe") == recipe:
            shutil.rmtree(other, ignore_errors=True)


def _open(entry: Path) -> SliceSet:
    meta = json.loads((entry / "meta.json").read_text())
    arrays = {name: RowFile(entry / f"{name}.rows") for name in ARRAYS}
    positions = entry / "positions.npy"
    return SliceSet(arrays["images"], arrays["labels"], arrays["valid"],
                    np.load(positions) if positions.is_file() else None, np.load(entry / "volumes.npy"),
                    [(name, tuple(spacing), unit) for name, spacing, unit in meta["cases"]])
