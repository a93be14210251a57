"""A psf data set folder and its dataset.json: the contract between `psf data ...` and `psf-train`.

Layout (DIR is what `psf data import` or `psf data mni152` wrote):
    DIR/dataset.json                              written last, atomically
    DIR/{train,val,test}/images/CASE.EXT          single-channel cases
    DIR/{train,val,test}/images/CASE_0000.EXT ..  multi-channel cases, one file per channel (nnU-Net naming)
    DIR/{train,val,test}/labels/CASE.EXT          integer labels 0..K-1, the image's shape and geometry
EXT is ".nii.gz" for volumes and ".png" for 2D images.

A folder without dataset.json, or with one from an older psf (no "format" key), is read as the MNI152 demo
(modality MR, one channel "T1", labels other/grey_matter/white_matter) with its cases found on disk, so data
sets built before this module keep training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from psf.errors import PsfError

FORMAT = "psf-dataset/1"
SPLITS = ("train", "val", "test")
MODALITIES = ("MR", "CT", "US", "XR", "other")
FILE_ENDINGS = (".nii.gz", ".png")
MNI152_LABELS = ("other", "grey_matter", "white_matter")
CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class DatasetError(PsfError):
    """A data set folder or its dataset.json is inconsistent; the message names the file and the fix."""


def channel_file_name(case: str, channel: int, file_ending: str) -> str:
    """nnU-Net's name of one channel file of a multi-channel case: CASE_0000.nii.gz, CASE_0001.nii.gz, ..."""
    return f"{case}_{channel:04d}{file_ending}"


@dataclass
class DatasetInfo:
    """What a data set holds. `labels[i]` names label value i (labels[0] is background);
    `channels[c]` names input channel c; `cases[split]` lists case names (no suffix, no channel index).

    `extra` keeps any other keys of dataset.json (e.g. the MNI152 builders' label rule and digests), so a
    load/save round trip loses nothing."""

    root: Path
    name: str
    modality: str = "MR"
    channels: list[str] = field(default_factory=lambda: ["T1"])
    labels: list[str] = field(default_factory=lambda: list(MNI152_LABELS))
    file_ending: str = ".nii.gz"
    cases: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    source: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    # -- files -------------------------------------------------------------------------------------------
    @property
    def multichannel(self) -> bool:
        return len(self.channels) > 1

    def image_files(self, split: str, case: str) -> list[Path]:
        """The case's image files in channel order (one path for a single-channel case)."""
        folder = Path(self.root) / split / "images"
        if not self.multichannel:
            return [folder / f"{case}{self.file_ending}"]
        return [folder / channel_file_name(case, c, self.file_ending) for c in range(len(self.channels))]

    def label_file(self, split: str, case: str) -> Path:
        return Path(self.root) / split / "labels" / f"{case}{self.file_ending}"

    def check_files(self) -> None:
        """Raise DatasetError naming the first case whose image or label file is missing."""
        for split, names in self.cases.items():
            for case in names:
                for path in [*self.image_files(split, case), self.label_file(split, case)]:
                    if not path.is_file():
                        raise DatasetError(f"case {case!r} ({split}): {path} is missing; re-run psf data import")

    # -- dataset.json ------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        main = {
            "format": FORMAT,
            "name": self.name,
            "modality": self.modality,
            "channels": list(self.channels),
            "labels": list(self.labels),
            "file_ending": self.file_ending,
            "cases": {s: list(self.cases.get(s, [])) for s in SPLITS},
            "source": dict(self.source),
        }
        return {**main, **{k: v for k, v in self.extra.items() if k not in main and k != "notes"}}

    def save(self, root: Path | None = None) -> Path:
        """Write ROOT/dataset.json atomically (call it last, after every image and label file)."""
        from psf.io.atomic import write_text_atomic

        self.validate()
        return write_text_atomic(Path(root or self.root) / "dataset.json", json.dumps(self.to_json(), indent=2) + "\n")

    def validate(self) -> None:
        where = Path(self.root) / "dataset.json"
        if self.modality not in MODALITIES:
            raise DatasetError(f"{where}: modality {self.modality!r} is not one of {', '.join(MODALITIES)}")
        if len(self.channels) < 1:
            raise DatasetError(f"{where}: needs at least one channel name")
        if len(self.labels) < 2:
            raise DatasetError(f"{where}: needs at least two labels (background and one structure), got {self.labels}")
        if self.file_ending not in FILE_ENDINGS:
            raise DatasetError(f"{where}: file_ending {self.file_ending!r} is not one of {', '.join(FILE_ENDINGS)}")
        seen: dict[str, str] = {}
        for split, names in self.cases.items():
            if split not in SPLITS:
                raise DatasetError(f"{where}: unknown split {split!r}; use {', '.join(SPLITS)}")
            for case in names:
                if case in seen:
                    raise DatasetError(f"{where}: case {case!r} is in both {seen[case]} and {split}; a case belongs to one split")
                seen[case] = split


def load(root: str | Path) -> DatasetInfo:
    """Read ROOT/dataset.json (or, for an older data set without one, the MNI152 defaults and the cases on disk)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; build one with psf data import SRC {root} or psf data mni152 {root}")
    path = root / "dataset.json"
    raw: dict = {}
    if path.is_file():
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not readable JSON ({exc}); rebuild the data set") from exc
        if not isinstance(raw, dict):
            raise DatasetError(f"{path}: expected a JSON object")
    if raw.get("format") is None:
        return _legacy(root, raw)
    if raw["format"] != FORMAT:
        raise DatasetError(f"{path}: format {raw['format']!r} is not {FORMAT!r}; this psf is too old or the file is not psf's")
    known = {"format", "name", "modality", "channels", "labels", "file_ending", "cases", "source"}
    try:
        info = DatasetInfo(
            root=root, name=str(raw.get("name", root.name)), modality=str(raw["modality"]),
            channels=[str(c) for c in raw["channels"]], labels=[str(x) for x in raw["labels"]],
            file_ending=str(raw.get("file_ending", ".nii.gz")),
            cases={s: [str(c) for c in raw.get("cases", {}).get(s, [])] for s in SPLITS},
            source=dict(raw.get("source") or {}), extra={k: v for k, v in raw.items() if k not in known},
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path}: missing or malformed key {exc}; see psf's data-set layout in the README") from exc
    info.validate()
    return info


def _legacy(root: Path, raw: dict) -> DatasetInfo:
    """An MNI152 data set written before dataset.json had a format: cases are the files on disk."""
    labels = raw.get("labels") or list(MNI152_LABELS)
    info = DatasetInfo(root=root, name=str(raw.get("name", root.name)), labels=[str(x) for x in labels],
                       source={"layout": "mni152", "path": None, "split_seed": None, "split_file": None},
                       extra={k: v for k, v in raw.items() if k not in ("name", "labels")})
    info.cases = {s: discover_cases(root / s / "images", info.file_ending, multichannel=False) for s in SPLITS}
    return info


def discover_cases(folder: Path, file_ending: str, multichannel: bool) -> list[str]:
    """Sorted case names of the image files in `folder` (channel suffix _NNNN stripped when multichannel)."""
    if not folder.is_dir():
        return []
    names = set()
    for path in folder.iterdir():
        if not path.name.endswith(file_ending) or path.name.startswith("."):
            continue
        stem = path.name[: -len(file_ending)]
        match = CHANNEL_SUFFIX.match(stem) if multichannel else None
        names.add(match["case"] if match else stem)
    return sorted(names)
