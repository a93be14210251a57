"""`psf data import SRC OUT`: nnU-Net v2, Medical Segmentation Decathlon or images/ + masks/ folders -> psf's layout.

The layout is recognised from SRC (see the readers in this package), every case is read and checked (channels,
shape and geometry against its label, label values declared), cases are split whole into train/val/test, and the
result is written into a temporary folder beside OUT that is renamed into place only when everything, dataset.json
last, is written: an error or Ctrl-C leaves OUT as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psf.data.dataset import MODALITIES, SPLITS, DatasetError, DatasetInfo, channel_file_name
from psf.data.importers.source import RawCase, RawDataset, parse_label_names
from psf.data.importers.split import split_by_seed, split_from_file

LAYOUTS = ("nnunet-v2", "msd", "folders")


@dataclass(frozen=True)
class ImportOptions:
    """val/test: fractions of the cases (split by `seed`) unless `split_file` is given; labels: comma-separated names
    (background first) replacing the source's; modality: one of psf.data.dataset.MODALITIES (default: from the source)."""

    val: float = 0.2
    test: float = 0.2
    seed: int = 0
    split_file: Path | None = None
    labels: str | None = None
    modality: str | None = None
    name: str | None = None
    overwrite: bool = False
    quiet: bool = False


def detect_layout(src: Path) -> str:
    from psf.data.importers.folders import is_folders
    from psf.data.importers.msd import is_msd
    from psf.data.importers.nnunet import is_nnunet

    if not src.is_dir():
        raise DatasetError(f"{src} is not a folder; give the data set's root folder")
    if is_nnunet(src):
        return "nnunet-v2"
    if is_msd(src):
        return "msd"
    if is_folders(src):
        return "folders"
    raise DatasetError(f"{src}: not an nnU-Net v2 raw data set (dataset.json with channel_names), an MSD task (dataset.json "
                       "with modality and training) or a pair of images/ and masks/ folders")


def read_source(src: Path, options: ImportOptions) -> RawDataset:
    layout = detect_layout(src)
    if layout == "folders":
        from psf.data.importers.folders import read_folders

        names = [n.strip() for n in options.labels.split(",") if n.strip()] if options.labels else None
        raw = read_folders(src, names)
    else:
        from psf.data.importers.msd import read_msd
        from psf.data.importers.nnunet import read_nnunet

        raw = read_nnunet(src) if layout == "nnunet-v2" else read_msd(src)
        raw.labels = parse_label_names(options.labels, len(raw.labels), str(src)) or raw.labels
    if options.modality:
        if options.modality not in MODALITIES:
            raise DatasetError(f"--modality {options.modality!r}: choose one of {', '.join(MODALITIES)}")
        raw.modality = options.modality
    if options.name:
        raw.name = options.name
    return raw


def plan_splits(raw: RawDataset, options: ImportOptions) -> dict[str, list[str]]:
    names = [c.name for c in raw.cases]
    fixed = [c.name for c in raw.fixed_test]
    clash = sorted(set(names) & set(fixed))
    if clash:
        raise DatasetError(f"case {clash[0]!r} is both a training case and a test case (imagesTs/labelsTs); rename one")
    if options.split_file:
        splits = split_from_file(options.split_file, names + fixed)
    else:
        splits = split_by_seed(names, options.val, 0.0 if fixed else options.test, options.seed)
        splits["test"] = sorted(splits["test"] + fixed)
    return splits


def import_dataset(src: Path, out: Path, options: ImportOptions = ImportOptions()) -> DatasetInfo:
    """Read SRC, write psf's layout into OUT (atomically, as a whole) and return its DatasetInfo."""
    from psf.io.atomic import atomic_folder
    from psf.progress import progress_bar

    src, out = Path(src), Path(out)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise DatasetError(f"{out} exists and is not empty; pass --overwrite to replace it")
    raw = read_source(src, options)
    splits = plan_splits(raw, options)
    by_name: dict[str, RawCase] = {c.name: c for c in [*raw.cases, *raw.fixed_test]}
    info = DatasetInfo(root=out, name=raw.name, modality=raw.modality, channels=list(raw.channels), labels=list(raw.labels),
                       file_ending=raw.file_ending, cases=splits,
                       source={"layout": raw.layout, "path": str(src.resolve()),
                               "split_seed": None if options.split_file else options.seed,
                               "split_file": str(options.split_file) if options.split_file else None},
                       extra={"source_label_values": raw.values, **raw.extra})
    info.validate()
    with atomic_folder(out) as tmp, progress_bar(options.quiet) as bar:
        task = bar.add_task("importing", total=len(by_name), unit="cases")
        for split in SPLITS:
            for case in splits[split]:
                _write_case(tmp, info, split, case, by_name[case])
                bar.advance(task)
        info.save(tmp)
    info.extra["notes"] = raw.notes
    return info


def _write_case(root: Path, info: DatasetInfo, split: str, case: str, raw_case: RawCase) -> None:
    data = raw_case.load()
    if len(data.channels) != len(info.channels):
        raise DatasetError(f"case {case!r}: {len(data.channels)} channel(s), the data set declares {len(info.channels)}")
    images = root / split / "images"
    labels = root / split / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    names = [f"{case}{info.file_ending}"] if len(info.channels) == 1 else \
        [channel_file_name(case, c, info.file_ending) for c in range(len(info.channels))]
    if info.file_ending == ".png":
        from PIL import Image

        for name, channel in zip(names, data.channels):
            Image.fromarray(np.asarray(channel, dtype=np.uint8), mode="L").save(images / name, format="PNG")
        Image.fromarray(data.label.astype(np.uint8), mode="L").save(labels / f"{case}.png", format="PNG")
        return
    for name, channel in zip(names, data.channels):
        _save_nifti(images / name, np.asarray(channel), data.affine, data.header)
    _save_nifti(labels / f"{case}.nii.gz", data.label.astype(np.uint8), data.affine, data.header)


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray, header) -> None:
    """The source's affine and qform/sform codes; the array's own dtype (no scaling carried over)."""
    import nibabel as nib

    if array.dtype in (np.int64, np.uint64, np.bool_):  # nibabel refuses 64-bit ints without an explicit dtype
        array = array.astype(np.int32 if array.dtype != np.bool_ else np.uint8)
    elif array.dtype == np.float64:  # scaled integers (scl_slope) read as float64: float32 keeps them, at half the size
        array = array.astype(np.float32)
    img = nib.Nifti1Image(array, affine)
    if header is not None and hasattr(header, "get_qform"):
        qform, qcode = header.get_qform(coded=True)
        sform, scode = header.get_sform(coded=True)
        img.set_qform(affine if qform is None else qform, code=int(qcode or 0))
        img.set_sform(affine if sform is None else sform, code=int(scode or 0))
        if qform is None and sform is None:
            img.set_qform(affine, code=1)
    img.set_data_dtype(array.dtype)
    nib.save(img, str(path))


def summary_line(info: DatasetInfo, seconds: float) -> str:
    counts = ", ".join(f"{s} {len(info.cases[s])}" for s in SPLITS)
    line = (f"imported {sum(len(v) for v in info.cases.values())} cases ({counts}) of {info.name} "
            f"({info.source['layout']}, {info.modality}, {len(info.channels)} channel(s), {len(info.labels)} labels: "
            f"{', '.join(info.labels)}) into {info.root} in {seconds:.1f} s")
    return line


__all__ = ["ImportOptions", "LAYOUTS", "detect_layout", "import_dataset", "summary_line"]
