"""psf-infer end to end on real scans: masks in the source geometry, bad files isolated, atomic outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture()
def scans(mni_data, tmp_path):
    """A folder with real test volumes, a PNG slice, a corrupt NIfTI and a stray text file."""
    folder = tmp_path / "scans"
    shutil.copytree(mni_data / "test" / "images", folder / "nifti")
    volume = nib.load(next((folder / "nifti").iterdir()))
    plane = np.asarray(volume.dataobj)[:, :, 2]
    (folder / "png").mkdir()
    Image.fromarray(plane.astype(np.uint8)).save(folder / "png" / "slice.png")
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (folder / "notes.txt").write_text("ignored: not a scan suffix")
    return folder


def test_masks_written_in_source_geometry_and_bad_file_reported(tiny_bundle, scans, tmp_path):
    out = tmp_path / "out"
    report = tmp_path / "run.json"
    result = run_cli("infer", "--engine", str(tiny_bundle / "map.onnx"), str(scans), "-o", str(out), "--report", str(report), "-q")
    assert result.returncode == 1, result.stderr
    assert "broken.nii.gz" in result.stderr and "not a readable NIfTI" in result.stderr
    assert "1 failed" in result.stdout
    run = json.loads(report.read_text())
    assert run["ok"] == 4 and run["failed"] == 1
    for source in (scans / "nifti").iterdir():
        mask = nib.load(out / "nifti" / source.name.replace(".nii.gz", "_mask.nii.gz"))
        src = nib.load(source)
        assert mask.shape == src.shape
        np.testing.assert_array_equal(mask.affine, src.affine)
        assert mask.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}
    png_mask = np.asarray(Image.open(out / "png" / "slice_mask.png"))
    assert png_mask.shape == np.asarray(Image.open(scans / "png" / "slice.png")).shape
    assert not list(out.rglob("*.partial*"))


def test_existing_masks_need_overwrite(tiny_bundle, mni_data, tmp_path):
    images = mni_data / "test" / "images"
    args = ("infer", "--engine", str(tiny_bundle), str(images), "-o", str(tmp_path), "-q")
    assert run_cli(*args).returncode == 0
    second = run_cli(*args)
    assert second.returncode == 0 and "skipped" in second.stdout and "--overwrite" in second.stderr
    assert run_cli(*args, "--overwrite").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--engine", "/nonexistent/map.onnx"), "no such file"),
        (("--engine", "{bundle}", "--batch-size", "0"), "--batch-size"),
        (("--engine", "{bundle}", "--backend", "tpu"), "--backend 'tpu'"),
        (("--engine", "{bundle}", "--mode", "cloud"), "--mode 'cloud'"),
    ],
)
def test_bad_flags_get_one_clear_line(tiny_bundle, mni_data, args, message):
    args = [a.replace("{bundle}", str(tiny_bundle)) for a in args]
    result = run_cli("infer", *args, str(mni_data / "test" / "images"), "-o", "/tmp/psf-never")
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_dicom_series_gets_a_nifti_mask_in_patient_space(tiny_bundle, mni_data, tmp_path):
    from tests.io.dicom_factory import write_series

    volume = np.asarray(nib.load(next((mni_data / "test" / "images").iterdir())).dataobj, dtype=np.float32)
    write_series(tmp_path / "scans" / "patient1" / "t1", volume[:, :, :4])
    out = tmp_path / "out"
    result = run_cli("infer", "--engine", str(tiny_bundle), str(tmp_path / "scans"), "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    mask = nib.load(out / "patient1" / "t1_mask.nii.gz")
    assert mask.shape == (volume.shape[1], volume.shape[0], 4)
    np.testing.assert_allclose(mask.affine @ [0, 0, 3, 1], [100, 120, -40 + 3 * 2.5, 1], atol=1e-5)


def test_canary_tokens_in_dicom_headers_and_file_names_go_nowhere(tiny_bundle, mni_data, tmp_path):
    """Header values and member file names never reach the pipeline's outputs, logs or report."""
    import gzip

    from tests.io.dicom_factory import write_series

    volume = np.asarray(nib.load(next((mni_data / "test" / "images").iterdir())).dataobj, dtype=np.float32)
    names = [f"QKV9Z{k}.dcm" for k in range(3)]
    write_series(tmp_path / "scans" / "series", volume[:, :, :3], canary="XJ4TW", names=names)
    out, report = tmp_path / "out", tmp_path / "run.json"
    result = run_cli("infer", "--engine", str(tiny_bundle), str(tmp_path / "scans"), "-o", str(out), "--report", str(report),
                     "--overlay")
    assert result.returncode == 0, result.stderr
    produced = [result.stdout, result.stderr, report.read_text()]
    produced += [gzip.decompress(p.read_bytes()).decode("latin-1") if p.suffix == ".gz" else p.read_bytes().decode("latin-1")
                 for p in out.rglob("*") if p.is_file()]
    assert len(produced) == 5  # mask + overlay + 3 texts
    for text in produced:
        assert "XJ4TW" not in text and "QKV9Z" not in text


def test_overlay_png_shows_labels_in_colour(tiny_bundle, mni_data, tmp_path):
    image = sorted((mni_data / "test" / "images").iterdir())[1]  # mid-brain block: plenty of tissue
    run_cli("infer", "--engine", str(tiny_bundle), str(image), "-o", str(tmp_path), "--overlay", "-q", check=True)
    picture = np.asarray(Image.open(tmp_path / image.name.replace(".nii.gz", "_overlay.png")))
    assert picture.ndim == 3 and picture.shape[2] == 3
    coloured = (picture[..., 0].astype(int) - picture[..., 2].astype(int)) != 0
    assert coloured.mean() > 0.05  # labels tint a visible part of the montage


def test_dicom_seg_references_the_series(tiny_bundle, mni_data, tmp_path):
    import pydicom

    from tests.io.dicom_factory import write_series

    volume = np.asarray(nib.load(next((mni_data / "test" / "images").iterdir())).dataobj, dtype=np.float32)
    files = write_series(tmp_path / "scans" / "ct", volume[:, :, :4])
    result = run_cli("infer", "--engine", str(tiny_bundle), str(tmp_path / "scans"), "-o", str(tmp_path / "out"),
                     "--dicom-seg", "-q")
    assert result.returncode == 0, result.stderr
    seg = pydicom.dcmread(tmp_path / "out" / "ct_seg.dcm")
    source = pydicom.dcmread(files[0])
    assert seg.Modality == "SEG"
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["grey_matter", "white_matter"]


def test_series_faults_and_shared_stems_in_one_run(tiny_bundle, mni_data, tmp_path):
    """Issue 14's three faults: a series with an unreadable member is segmented without it (and says so); a series
    lacking optional patient/study attributes gets a DICOM-SEG highdicom reads; vol.mha and vol.nrrd get one mask
    each; a scan whose DICOM-SEG cannot be built counts as failed while its mask is kept and reported."""
    import highdicom as hd
    import pydicom
    import SimpleITK as sitk

    from psf.io.dicom_seg import TYPE2_PATIENT_STUDY
    from tests.io.dicom_factory import write_series

    volume = np.asarray(nib.load(next((mni_data / "test" / "images").iterdir())).dataobj, dtype=np.float32)
    scans, out, report = tmp_path / "scans", tmp_path / "out", tmp_path / "run.json"
    partial = write_series(scans / "partial", volume[:, :, :5])
    broken = pydicom.dcmread(partial[4])
    broken.PixelData = broken.PixelData[:64]
    broken.save_as(partial[4])
    for path in write_series(scans / "stripped", volume[:, :, :4]):
        ds = pydicom.dcmread(path)
        for keyword in TYPE2_PATIENT_STUDY[2:]:
            delattr(ds, keyword)
        ds.save_as(path)
    for path in write_series(scans / "noframe", volume[:, :, :3]):
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path)
    image = sitk.GetImageFromArray(volume[:, :, :3].transpose(2, 1, 0))
    sitk.WriteImage(image, str(scans / "vol.mha"))
    sitk.WriteImage(image, str(scans / "vol.nrrd"))
    result = run_cli("infer", "--engine", str(tiny_bundle), str(scans), "-o", str(out), "--dicom-seg", "--report", str(report), "-q")
    run = {Path(f["input"]).name: f for f in json.loads(report.read_text())["files"]}
    assert result.returncode == 1 and "5 scans, 1 failed" in result.stdout, result.stderr
    assert run["partial"]["status"] == "ok" and "IM0004.dcm" in run["partial"]["warnings"][0]
    assert "IM0004.dcm" in result.stderr and nib.load(out / "partial_mask.nii.gz").shape[2] == 4
    seg = hd.seg.segread(out / "stripped_seg.dcm")
    assert run["stripped"]["status"] == "ok" and seg.PatientSex == ""
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["grey_matter", "white_matter"]
    assert run["noframe"]["status"] == "failed" and "dicom_seg not written" in run["noframe"]["reason"]
    assert (out / "noframe_mask.nii.gz").is_file() and run["noframe"]["outputs"] == {"mask": str(out / "noframe_mask.nii.gz")}
    assert {run["vol.mha"]["output"], run["vol.nrrd"]["output"]} == {str(out / "vol_mha_mask.nii.gz"), str(out / "vol_nrrd_mask.nii.gz")}
    assert all(run[n]["status"] == "ok" for n in ("vol.mha", "vol.nrrd")) and "share a name" in result.stderr
