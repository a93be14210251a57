"""psf data: build demo data sets from files that installed packages ship."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.progress import stderr

app = typer.Typer(help="Build demo data sets (no downloads) or import yours (nnU-Net, MSD, image folders).", no_args_is_help=True)


@app.command("mni152")
def mni152(
    out: Annotated[Path, typer.Argument(help="Folder to write the data set into.")],
    block: Annotated[int, typer.Option(help="Slices per split block.")] = 10,
    gap: Annotated[int, typer.Option(help="Slices dropped at each border between splits.")] = 1,
    centers: Annotated[int, typer.Option(help="Write N simulated centers (OUT/center_a, ...) with different acquisitions and disjoint training blocks; 0: one data set.")] = 0,
    subjects: Annotated[int, typer.Option(help="Write N synthetic subjects (the template under N random smooth deformations), split whole into train/val/test, each sampled every --step slices: a data set whose held-out slices are drawn like the training ones (for membership audits); 0: the single-template split.")] = 0,
    step: Annotated[int, typer.Option(help="With --subjects: one axial slice every STEP slices (1 mm each) through the brain.")] = 8,
    seed: Annotated[int, typer.Option(help="With --subjects: seed of the deformations.")] = 0,
    debug: DebugOpt = False,
) -> None:
    """2D grey/white-matter data set from the MNI152 T1 template shipped inside nilearn."""
    reports_errors(_mni152)(out, block, gap, centers, subjects, step, seed, debug=debug)


def _mni152(out: Path, block: int, gap: int, centers: int, subjects: int, step: int, seed: int) -> None:
    from psf.data.mni152 import build_mni152

    if centers and subjects:
        from psf.errors import UsageError

        raise UsageError("--centers and --subjects are separate data sets; pick one")
    if subjects:
        from psf.data.subjects import build_subjects

        counts = build_subjects(out, subjects, step=step, seed=seed)
        stderr.print(f"wrote {out} ({', '.join(f'{s} {n}' for s, n in counts.items())} axial slices of {subjects} subjects; "
                     f"deformations in {out / 'dataset.json'})")
        return
    if centers:
        from psf.data.centers import build_centers

        for name, info in build_centers(out, centers, block=block, gap=gap).items():
            a = info["acquisition"]
            stderr.print(f"wrote {out / name} ({', '.join(f'{s} {n}' for s, n in info['counts'].items())} slices; gamma {a['gamma']}, "
                         f"bias {a['bias']}, contrast {a['contrast']}, blur {a['blur_voxels']}, noise {a['noise']}, "
                         f"scale {a['scale']}, offset {a['offset']})", highlight=False)
        return
    built = build_mni152(out, block=block, gap=gap)
    counts = ", ".join(f"{split} {n}" for split, n in built.counts.items())
    stderr.print(f"wrote {out} ({counts} axial slices; rule and splits in {out / 'dataset.json'})")


@app.command("import")
def import_(
    src: Annotated[Path, typer.Argument(help="nnU-Net v2 raw data set, MSD task folder, or a folder with images/ and masks/.")],
    out: Annotated[Path, typer.Argument(help="Folder to write psf's layout into (OUT/{train,val,test}/{images,labels}, OUT/dataset.json).")],
    val: Annotated[float, typer.Option(help="Share of the cases for validation (split by case, with --seed).")] = 0.2,
    test: Annotated[float, typer.Option(help="Share of the cases for testing (nnU-Net imagesTs/ with labelsTs/ is used as the test split instead).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split by case: the same seed and cases give the same split.")] = 0,
    split_file: Annotated[Optional[Path], typer.Option(help='JSON {"train": [...], "val": [...], "test": [...]} or nnU-Net\'s splits_final.json (fold 0); replaces --val/--test/--seed.')] = None,
    labels: Annotated[Optional[str], typer.Option(help="Label names, background first, comma-separated (e.g. background,liver,tumour); default: the data set's (folders: label_1, label_2, ...).")] = None,
    modality: Annotated[Optional[str], typer.Option(help="MR, CT, US, XR or other: decides the intensity normalization (default: from the channel names; folders: other).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Data set name (default: the source's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists (only once the new data set is complete).")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Import a data set in a layout people share (nnU-Net v2, Medical Segmentation Decathlon, images/ + masks/)."""
    from psf.data.importers import ImportOptions

    options = ImportOptions(val=val, test=test, seed=seed, split_file=split_file, labels=labels, modality=modality,
                            name=name, overwrite=overwrite, quiet=quiet)
    reports_errors(_import)(src, out, options, debug=debug)


def _import(src: Path, out: Path, options) -> None:
    import time

    from psf.data.importers import import_dataset, summary_line

    started = time.perf_counter()
    info = import_dataset(src, out, options)
    for note in info.extra.get("notes", []):
        stderr.print(f"note: {note}", highlight=False)
    print(summary_line(info, time.perf_counter() - started))
