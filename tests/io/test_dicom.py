"""DICOM: real pydicom test files and series written from real anatomy, with the faults clinics have."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from psf.data.mni152 import TEMPLATE_FILES, template_dir
from psf.errors import ScanReadError
from psf.io import find_scans, mask_path, read_scan, read_source, write_mask
from tests.io.dicom_factory import write_series


@pytest.fixture(scope="module")
def anatomy() -> np.ndarray:
    """12 real axial slices of the MNI152 T1 template, as (rows, cols, slices), intensities rescaled."""
    data = np.asarray(nib.load(template_dir() / TEMPLATE_FILES["t1"]).dataobj, dtype=np.float32)
    return data[40:140:2, 30:200:2, 60:72] * 4.0


def test_real_ct_file_geometry_and_rescale():
    path = get_testdata_file("CT_small.dcm")
    scan = read_scan(path)
    assert scan.pixels.shape == (128, 128, 1) and scan.format == "dicom"
    import pydicom

    ds = pydicom.dcmread(path)
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(scan.pixels[:, :, 0], expected.T)
    ipp = np.array(ds.ImagePositionPatient, float)
    np.testing.assert_allclose(scan.geometry.affine @ [0, 0, 0, 1], [-ipp[0], -ipp[1], ipp[2], 1])
    # Column index i runs along the row direction (LPS +x = RAS -x) by the column spacing.
    np.testing.assert_allclose(scan.geometry.affine @ [1, 0, 0, 1] - scan.geometry.affine @ [0, 0, 0, 1],
                               [-float(ds.PixelSpacing[1]), 0, 0, 0])


@pytest.mark.parametrize(("name", "reason"), [("MR_truncated.dcm", "pixel data unreadable"),
                                              ("rtplan.dcm", "without pixel data")])
def test_real_bad_files_are_refused(name, reason):
    with pytest.raises(ScanReadError, match=reason) as info:
        read_scan(get_testdata_file(name))
    assert name in str(info.value)


def test_shuffled_series_is_sorted_rescaled_and_placed(anatomy, tmp_path):
    names = [f"x{n:03d}" for n in np.random.default_rng(3).permutation(anatomy.shape[2])]  # no suffix, shuffled
    write_series(tmp_path / "study" / "t1", anatomy, names=names)
    sources = find_scans([tmp_path / "study"])
    assert len(sources) == 1 and sources[0].kind == "dicom" and len(sources[0].files) == anatomy.shape[2]
    scan = read_source(sources[0])
    np.testing.assert_allclose(scan.pixels, np.rint(anatomy.transpose(1, 0, 2) / 2 + 25) * 2 - 50, atol=1e-4)
    # Voxel (i, j, k) = column i, row j of slice k: LPS (x0 + 0.8 i, y0 + 0.9 j, z0 + 2.5 k) -> RAS.
    world = scan.geometry.affine @ [3, 5, 7, 1]
    np.testing.assert_allclose(world[:3], [-(-100 + 0.8 * 3), -(-120 + 0.9 * 5), -40 + 2.5 * 7], atol=1e-6)
    out = mask_path(sources[0], None, tmp_path / "out", scan.format)
    assert out == tmp_path / "out" / "t1_mask.nii.gz"
    write_mask(out, np.zeros(scan.pixels.shape, np.uint8), scan)
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, scan.geometry.affine, atol=1e-5)
    assert int(written.header["sform_code"]) == 1


def test_gantry_tilt_gives_a_sheared_affine(anatomy, tmp_path):
    write_series(tmp_path / "tilt", anatomy[:, :, :5], tilt_mm=0.4)
    scan = read_source(find_scans([tmp_path / "tilt"])[0])
    world = scan.geometry.affine @ [0, 0, 4, 1]
    np.testing.assert_allclose(world[:3], [100, 120 - 4 * 0.4, -40 + 4 * 2.5], atol=1e-6)
    assert scan.geometry.qform is None and scan.geometry.sform_code == 1


def test_missing_and_duplicate_slices_are_named(anatomy, tmp_path):
    paths = write_series(tmp_path / "gap", anatomy[:, :, :6])
    paths[3].unlink()
    with pytest.raises(ScanReadError, match="missing slice between IM0002.dcm and IM0004.dcm"):
        read_source(find_scans([tmp_path / "gap"])[0])
    paths = write_series(tmp_path / "dup", anatomy[:, :, :4])
    import pydicom

    copy = pydicom.dcmread(paths[1])
    copy.SOPInstanceUID = "1.2.3.4"
    copy.save_as(tmp_path / "dup" / "IM9999.dcm")
    with pytest.raises(ScanReadError, match="duplicate slice position"):
        read_source(find_scans([tmp_path / "dup"])[0])


def test_two_series_in_one_folder_become_two_scans(anatomy, tmp_path):
    write_series(tmp_path / "mixed", anatomy[:, :, :3], names=["a1.dcm", "a2.dcm", "a3.dcm"])
    write_series(tmp_path / "mixed", anatomy[:, :, 3:6], names=["b1.dcm", "b2.dcm", "b3.dcm"])
    sources = find_scans([tmp_path / "mixed"])
    assert sorted(s.path.name for s in sources) == ["mixed_series1", "mixed_series2"]
    assert all(read_source(s).pixels.shape[2] == 3 for s in sources)


def test_reader_returns_no_header_values(anatomy, tmp_path):
    write_series(tmp_path / "canary", anatomy[:, :, :3], canary="ZQXJ7")
    scan = read_source(find_scans([tmp_path / "canary"])[0])
    # warnings (reader messages) and source_files (the input paths, for DICOM-SEG) carry no header value either
    assert set(vars(scan)) == {"pixels", "geometry", "format", "warnings", "source_files"}
    assert all(isinstance(p, Path) and p.parent == tmp_path / "canary" for p in scan.source_files)
    text = repr(scan.geometry) + scan.format + repr(scan.warnings)
    assert "ZQXJ7" not in text and "1.2." not in text
    assert scan.pixels.dtype == np.float32


def test_enhanced_multiframe_is_sorted_and_placed(anatomy, tmp_path):
    from tests.io.dicom_factory import write_multiframe

    volume = np.rint(anatomy[:, :, :5])
    path = write_multiframe(tmp_path / "enhanced.dcm", volume, frame_order=[3, 0, 4, 1, 2])
    scan = read_scan(path)
    np.testing.assert_array_equal(scan.pixels, volume.transpose(1, 0, 2))
    np.testing.assert_allclose((scan.geometry.affine @ [0, 0, 4, 1])[:3], [100, 120, -40 + 4 * 2.5], atol=1e-6)


def test_compressed_syntax_without_a_handler_names_it():
    import pydicom

    try:
        pydicom.dcmread(get_testdata_file("JPEG-lossy.dcm")).pixel_array
        pytest.skip("a JPEG Extended decoder is installed here, so nothing is missing")
    except Exception:
        pass
    with pytest.raises(ScanReadError, match="JPEG Extended.*pylibjpeg"):
        read_scan(get_testdata_file("JPEG-lossy.dcm"))
    assert read_scan(get_testdata_file("MR_small_RLE.dcm")).pixels.shape == (64, 64, 1)


def test_mixed_orientations_are_refused_naming_the_file(anatomy, tmp_path):
    import pydicom

    paths = write_series(tmp_path / "mixed", anatomy[:, :, :4])
    ds = pydicom.dcmread(paths[2])
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(paths[2])
    with pytest.raises(ScanReadError, match="mixed orientations.*IM0002.dcm"):
        read_source(find_scans([tmp_path / "mixed"])[0])
