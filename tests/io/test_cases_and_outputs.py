"""Multi-channel cases read by case, DICOM series with unreadable members, DICOM-SEG from series without optional
patient/study attributes, and inputs that share a stem: psf-infer's reading and output planning, without a model."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from psf.errors import ScanReadError, UsageError
from psf.io import find_scans, plan_mask_paths, read_case, read_source
from tests.data import factory
from tests.io.dicom_factory import write_series


@pytest.fixture(scope="module")
def mr_task(tmp_path_factory):
    return factory.nnunet_mr_task(tmp_path_factory.mktemp("raw"), cases=2, test_cases=0)


def test_channel_files_of_a_case_are_read_as_one_scan(mr_task):
    sources = find_scans([mr_task / "imagesTr"], channels=2)
    assert [(s.path.name, s.kind, len(s.files)) for s in sources] == [("mr_001.nii.gz", "case", 2), ("mr_002.nii.gz", "case", 2)]
    scan = read_source(sources[0])
    t1 = nib.load(mr_task / "imagesTr" / "mr_001_0000.nii.gz")
    t2 = nib.load(mr_task / "imagesTr" / "mr_001_0001.nii.gz")
    assert scan.pixels.shape == (2, 64, 64, 8) and scan.pixels.dtype == np.float32
    np.testing.assert_allclose(scan.pixels[1], np.asarray(t2.dataobj))
    np.testing.assert_allclose(scan.geometry.affine, t1.affine)
    assert find_scans([mr_task / "imagesTr"])[0].kind == "file"  # single-channel models: files stay files


def test_missing_or_misplaced_channel_is_named(mr_task, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("mr_001_0000.nii.gz", "mr_002_0000.nii.gz", "mr_002_0001.nii.gz"):
        (folder / name).write_bytes((mr_task / "imagesTr" / name).read_bytes())
    first, second = find_scans([folder], channels=2)
    with pytest.raises(ScanReadError, match=r"mr_001.nii.gz: channel file\(s\) mr_001_0001.nii.gz missing"):
        read_source(first)
    moved = nib.load(folder / "mr_002_0001.nii.gz")
    affine = moved.affine.copy()
    affine[2, 3] += 1.0
    nib.save(nib.Nifti1Image(np.asarray(moved.dataobj), affine), str(folder / "mr_002_0001.nii.gz"))
    with pytest.raises(ScanReadError, match=r"mr_002_0001.nii.gz: channel's geometry \(affine\) differs"):
        read_case(list(second.files))


@pytest.fixture()
def series(tmp_path):
    volume = np.random.default_rng(0).normal(300, 50, (24, 20, 6)).astype(np.float32)
    return tmp_path / "series", write_series(tmp_path / "series", volume)


def _break_pixels(path):
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(path)


def test_unreadable_end_slice_is_left_out_and_named(series):
    folder, files = series
    _break_pixels(files[5])
    (folder / "IM9999.dcm").write_bytes(b"not dicom at all" * 20)
    [source] = find_scans([folder])  # the junk file is reported with its series, not as a scan of its own
    scan = read_source(source)
    assert scan.pixels.shape == (20, 24, 5)
    [warning] = scan.warnings
    assert "IM0005.dcm" in warning and "IM9999.dcm" in warning and "left out 2" in warning
    assert "its slice at -27.50 mm along the slice normal" in warning  # z = -40 + 5 * 2.5 mm; the normal is +z
    assert [p.name for p in scan.source_files] == [f"IM{k:04d}.dcm" for k in range(5)]


def test_unreadable_middle_slice_refuses_with_the_gap_position(series):
    folder, files = series
    _break_pixels(files[2])
    _break_pixels(files[4])
    with pytest.raises(ScanReadError) as error:
        read_source(find_scans([folder])[0])
    message = str(error.value)
    assert "IM0002.dcm" in message and "IM0004.dcm" in message and "2 unreadable member(s)" in message
    assert "missing slice between IM0001.dcm and IM0003.dcm" in message and "between -37.50 and -32.50 mm" in message


def test_dicom_seg_for_a_series_without_optional_patient_and_study_attributes(series, tmp_path):
    import highdicom as hd

    from psf.io.dicom_seg import TYPE2_PATIENT_STUDY, write_dicom_seg

    folder, files = series
    for path in files:
        ds = pydicom.dcmread(path)
        for keyword in TYPE2_PATIENT_STUDY[2:]:  # keep name and ID; drop birth date, sex, study date/time, ...
            delattr(ds, keyword)
        ds.save_as(path)
    scan = read_source(find_scans([folder])[0])
    mask = np.zeros(scan.pixels.shape, np.uint8)
    mask[2:10, 3:9, 1:4], mask[12:18, 12:18, :] = 1, 4
    labels = ["background", "liver", "spleen", "kidney", "tumour"]
    write_dicom_seg(tmp_path / "seg.dcm", mask, scan.source_files, labels)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == labels[1:]
    assert seg.PatientSex == "" and seg.AccessionNumber == ""
    assert "PatientSex" not in pydicom.dcmread(files[0])  # the source files are untouched
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in scan.source_files]  # slice order of the mask
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)  # (slices, rows, cols)
    np.testing.assert_array_equal(pixels, mask.transpose(2, 1, 0))


def test_inputs_sharing_a_stem_get_their_own_masks_before_anything_is_written(tmp_path):
    for name in ("vol.mha", "vol.nrrd", "other.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "vol").mkdir()  # a DICOM series folder named like the files
    write_series(tmp_path / "vol", np.zeros((4, 4, 2), np.float32))
    sources = find_scans([tmp_path])
    targets, notes = plan_mask_paths(sources, tmp_path / "out")
    assert sorted(t.name for t in targets) == ["other_mask.nii.gz", "vol_dicom_mask.nii.gz", "vol_mha_mask.nii.gz",
                                                "vol_nrrd_mask.nii.gz"]
    assert len(notes) == 1 and "vol.mha" in notes[0] and "vol.nrrd" in notes[0]
    (tmp_path / "VOL.MHA").write_bytes(b"")
    with pytest.raises(UsageError, match="would both write"):
        plan_mask_paths(find_scans([tmp_path]), tmp_path / "out")
