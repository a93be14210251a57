"""psf data import on the factory's tasks (MSD CT, nnU-Net 2-channel MR, RGB ultrasound folders): the layout and
dataset.json it writes, the errors bad inputs get (naming the case, nothing left behind), and how it splits."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from psf.data import dataset
from psf.data.dataset import DatasetError
from psf.data.importers import ImportOptions, import_dataset
from psf.data.importers.split import split_by_seed, split_from_file
from tests.conftest import run_cli
from tests.data import factory

QUIET = ImportOptions(quiet=True)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return factory.write_all(tmp_path_factory.mktemp("raw"))


def _only_outputs(parent):
    """What the import left in OUT's parent (the raw copy aside): OUT, and no temporary folder."""
    return sorted(p.name for p in parent.iterdir() if p.name != "raw")


def test_msd_ct_task_imports_with_hounsfield_units_and_geometry(tasks, tmp_path):
    out = tmp_path / "ct"
    info = import_dataset(tasks["msd_ct"], out, QUIET)
    loaded = dataset.load(out)
    assert (loaded.modality, loaded.channels, loaded.labels) == ("CT", ["CT"], ["background", "brain"])
    assert loaded.source["layout"] == "msd" and loaded.source["split_seed"] == 0
    assert sum(len(v) for v in loaded.cases.values()) == 4 and loaded.cases == info.cases
    loaded.check_files()
    case = loaded.cases["train"][0]
    [image_file] = loaded.image_files("train", case)
    image, source = nib.load(image_file), nib.load(tasks["msd_ct"] / "imagesTr" / f"{case}.nii.gz")
    np.testing.assert_array_equal(np.asarray(image.dataobj), np.asarray(source.dataobj))  # HU kept, int16
    assert image.get_data_dtype() == np.int16 and np.asarray(image.dataobj).min() <= -990
    np.testing.assert_allclose(image.affine, source.affine)
    label = nib.load(loaded.label_file("train", case))
    assert label.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(label.dataobj))) == {0, 1}
    assert _only_outputs(tmp_path) == ["ct"]


def test_nnunet_two_channel_mr_task_keeps_channels_and_four_labels(tasks, tmp_path):
    out = tmp_path / "mr"
    info = import_dataset(tasks["nnunet_mr"], out, QUIET)
    assert (info.modality, info.channels) == ("MR", ["T1", "T2"])
    assert info.labels == ["background", "non_brain", "grey_matter", "white_matter"]
    case = info.cases["val"][0]
    files = info.image_files("val", case)
    assert [f.name for f in files] == [f"{case}_0000.nii.gz", f"{case}_0001.nii.gz"] and all(f.is_file() for f in files)
    for c, f in enumerate(files):
        source = tasks["nnunet_mr"] / "imagesTr" / f"{case}_{c:04d}.nii.gz"
        np.testing.assert_array_equal(np.asarray(nib.load(f).dataobj), np.asarray(nib.load(source).dataobj))
    assert set(np.unique(np.asarray(nib.load(info.label_file("val", case)).dataobj))) == {0, 1, 2, 3}
    assert "imagesTs" in " ".join(info.extra["notes"])  # unlabelled test cases: said, not imported


def test_msd_multimodal_4d_images_become_channels(tmp_path):
    task = factory.msd_ct_task(tmp_path / "raw", cases=3, modalities=("FLAIR", "T1"), name="Task91_MRBrain")
    info = import_dataset(task, tmp_path / "out", ImportOptions(val=0.34, test=0.0, quiet=True))
    assert info.channels == ["FLAIR", "T1"] and info.modality == "MR"
    case = info.cases["train"][0]
    source = np.asarray(nib.load(task / "imagesTr" / f"{case}.nii.gz").dataobj)
    for c, f in enumerate(info.image_files("train", case)):
        np.testing.assert_array_equal(np.asarray(nib.load(f).dataobj), source[..., c])


def test_rgb_ultrasound_folders_become_grey_png_with_consecutive_labels(tasks, tmp_path):
    out = tmp_path / "us"
    run_cli("data", "import", str(tasks["us_folder"]), str(out), "--labels", "background,grey_matter,white_matter",
            "--modality", "US", "-q", check=True)
    info = dataset.load(out)
    assert (info.modality, info.file_ending, info.labels[2]) == ("US", ".png", "white_matter")
    case = info.cases["test"][0]
    grey = Image.open(info.image_files("test", case)[0])
    assert grey.mode == "L" and grey.size == (64, 64)
    label = np.asarray(Image.open(info.label_file("test", case)))
    raw = np.asarray(Image.open(tasks["us_folder"] / "masks" / f"{case}.png"))
    np.testing.assert_array_equal(label, np.searchsorted([0, 128, 255], raw))  # 0/128/255 -> 0/1/2


def test_cli_prints_one_summary_line_and_refuses_to_overwrite(tasks, tmp_path):
    out = tmp_path / "ct"
    first = run_cli("data", "import", str(tasks["msd_ct"]), str(out), "-q")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("\n") == 1 and "imported 4 cases (train 2, val 1, test 1)" in first.stdout
    again = run_cli("data", "import", str(tasks["msd_ct"]), str(out), "-q")
    assert again.returncode == 1 and "--overwrite" in again.stderr and "Traceback" not in again.stderr


def test_folder_dicom_frame_is_read_and_scaled_to_8_bit(tasks, tmp_path):
    from tests.io.dicom_factory import write_series

    src = _copy(tasks["us_folder"], tmp_path)
    (src / "images" / "frame_001.png").unlink()
    frame = np.linspace(-200, 1800, 64 * 64, dtype=np.float32).reshape(64, 64, 1)  # 16-bit values after rescale
    write_series(src / "images", frame, names=["frame_001.dcm"])
    info = import_dataset(src, tmp_path / "out", ImportOptions(split_file=None, val=0.0, test=0.0, quiet=True))
    grey = np.asarray(Image.open(info.image_files("train", "frame_001")[0]))
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255
    assert (np.diff(grey.astype(int).ravel()) >= 0).all()  # the ramp survives, rows as stored


def _copy(task, tmp_path):
    return shutil.copytree(task, tmp_path / "raw" / task.name)


@pytest.mark.parametrize("fault", ["undeclared", "shape", "affine", "channel"])
def test_bad_cases_are_named_and_nothing_is_written(tasks, tmp_path, fault):
    src = _copy(tasks["nnunet_mr"], tmp_path)
    label_path = src / "labelsTr" / "mr_002.nii.gz"
    label = nib.load(label_path)
    data, affine = np.asarray(label.dataobj), label.affine.copy()
    if fault == "undeclared":
        data = data.copy()
        data[0, 0, 0] = 7
        expected = "label value(s) [7]"
    elif fault == "shape":
        data = data[:, :, :-1]
        expected = "has shape (64, 64, 7), the image (64, 64, 8)"
    elif fault == "affine":
        affine[0, 3] += 2.0
        expected = "another geometry"
    else:
        (src / "imagesTr" / "mr_002_0001.nii.gz").unlink()
        expected = "channel 1 (T2) file"
    if fault != "channel":
        nib.save(nib.Nifti1Image(data, affine), str(label_path))
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as error:
        import_dataset(src, out, QUIET)
    assert "case 'mr_002'" in str(error.value) and expected in str(error.value)
    assert not out.exists() and _only_outputs(tmp_path) == []


def test_folder_mask_of_another_size_is_named(tasks, tmp_path):
    src = _copy(tasks["us_folder"], tmp_path)
    Image.new("L", (32, 64)).save(src / "masks" / "frame_004.png")
    with pytest.raises(DatasetError, match=r"case 'frame_004': mask frame_004.png is 32x64, the image 64x64"):
        import_dataset(src, tmp_path / "out", QUIET)
    assert not (tmp_path / "out").exists()


def test_split_never_crosses_cases_and_is_seed_deterministic():
    cases = [f"case_{i:02d}" for i in range(20)]
    first = split_by_seed(cases, 0.2, 0.2, seed=3)
    assert first == split_by_seed(list(reversed(cases)), 0.2, 0.2, seed=3)  # order of discovery does not matter
    assert first != split_by_seed(cases, 0.2, 0.2, seed=4)
    assert [len(first[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    together = first["train"] + first["val"] + first["test"]
    assert sorted(together) == cases  # each case exactly once


def test_multichannel_cases_stay_whole_across_splits(tasks, tmp_path):
    info = import_dataset(tasks["nnunet_mr"], tmp_path / "mr", ImportOptions(seed=5, quiet=True))
    seen = []
    for split, names in info.cases.items():
        files = sorted(f.name for f in (tmp_path / "mr" / split / "images").iterdir())
        assert files == sorted(f"{n}_{c:04d}.nii.gz" for n in names for c in (0, 1))  # both channels, same split
        seen += names
    assert sorted(seen) == ["mr_001", "mr_002", "mr_003", "mr_004"]


def test_split_files_plain_and_nnunet_folds(tasks, tmp_path):
    names = ["mr_001", "mr_002", "mr_003", "mr_004"]
    plain = tmp_path / "split.json"
    plain.write_text(json.dumps({"train": names[:2], "val": [names[2]], "test": [names[3]]}))
    info = import_dataset(tasks["nnunet_mr"], tmp_path / "a", ImportOptions(split_file=plain, quiet=True))
    assert info.cases == {"train": names[:2], "val": [names[2]], "test": [names[3]]} and info.source["split_seed"] is None
    folds = tmp_path / "splits_final.json"
    folds.write_text(json.dumps([{"train": names[1:], "val": names[:1]}, {"train": names[:3], "val": names[3:]}]))
    assert split_from_file(folds, names) == {"train": names[1:], "val": names[:1], "test": []}
    plain.write_text(json.dumps({"train": names[:3], "val": names[2:]}))
    with pytest.raises(DatasetError, match="'mr_003' is in both train and val"):
        split_from_file(plain, names)
    plain.write_text(json.dumps({"train": names[:3]}))
    with pytest.raises(DatasetError, match="in no split"):
        split_from_file(plain, names)


def test_dataset_without_format_reads_as_the_mni152_demo(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "images" / f"mni152_{split}.nii.gz").write_bytes(b"")
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "mni152-tissue", "labels": ["other", "gm", "wm"], "block": 10}))
    info = dataset.load(tmp_path)
    assert (info.modality, info.channels, info.labels) == ("MR", ["T1"], ["other", "gm", "wm"])
    assert info.cases == {"train": ["mni152_train"], "val": ["mni152_val"], "test": []}
    info.save()  # upgrades it in place, keeping the builder's own keys
    again = json.loads((tmp_path / "dataset.json").read_text())
    assert again["format"] == dataset.FORMAT and again["block"] == 10 and dataset.load(tmp_path).cases == info.cases
