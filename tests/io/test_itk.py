"""MHA/NRRD through SimpleITK, and the written masks' geometry as nibabel and SimpleITK both see it."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from psf.data.mni152 import TEMPLATE_FILES, template_dir
from psf.errors import ScanReadError
from psf.io import read_scan, write_mask

sitk = pytest.importorskip("SimpleITK")

OBLIQUE = (0.9659258, -0.2588190, 0.0, 0.2588190, 0.9659258, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def anatomy() -> np.ndarray:
    data = np.asarray(nib.load(template_dir() / TEMPLATE_FILES["t1"]).dataobj, dtype=np.int16)
    return data[40:140, 30:150, 80:90]  # (i, j, k)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_oblique_itk_image_reads_in_place_and_mask_agrees_in_sitk(anatomy, tmp_path, suffix):
    image = sitk.GetImageFromArray(anatomy.T)  # ITK arrays are (k, j, i)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-90.0, 110.5, -30.25))
    image.SetDirection(OBLIQUE)
    source = tmp_path / f"scan{suffix}"
    sitk.WriteImage(image, str(source))
    scan = read_scan(source)
    np.testing.assert_array_equal(scan.pixels, anatomy.astype(np.float32))
    ijk = (7, 11, 3)
    lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
    np.testing.assert_allclose((scan.geometry.affine @ [*ijk, 1])[:3], lps * [-1, -1, 1], atol=1e-6)
    out = write_mask(tmp_path / "mask.nii.gz", np.ones(scan.pixels.shape, np.uint8), scan)
    mask = sitk.ReadImage(str(out))
    # NIfTI stores float32: world coordinates agree to < 1e-4 mm across the volume.
    far = (anatomy.shape[0] - 1, anatomy.shape[1] - 1, anatomy.shape[2] - 1)
    for index in ((0, 0, 0), ijk, far):
        assert np.abs(np.array(mask.TransformIndexToPhysicalPoint(index)) -
                      np.array(image.TransformIndexToPhysicalPoint(index))).max() < 1e-4


def test_nifti_mask_geometry_agrees_in_nibabel_and_sitk(tmp_path):
    src = template_dir() / TEMPLATE_FILES["t1"]
    scan = read_scan(src)
    out = write_mask(tmp_path / "mask.nii.gz", np.zeros(scan.pixels.shape, np.uint8), scan)
    a, b = sitk.ReadImage(str(src)), sitk.ReadImage(str(out))
    np.testing.assert_allclose(b.GetOrigin(), a.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(b.GetSpacing(), a.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(nib.load(out).affine, nib.load(src).affine, atol=1e-6)


def test_truncated_and_oversized_itk_files_are_refused(anatomy, tmp_path):
    image = sitk.GetImageFromArray(anatomy.T)
    sitk.WriteImage(image, str(tmp_path / "ok.mha"))
    raw = (tmp_path / "ok.mha").read_bytes()
    (tmp_path / "cut.mha").write_bytes(raw[:-500])
    with pytest.raises(ScanReadError, match="cut.mha"):
        read_scan(tmp_path / "cut.mha")
    header_end = raw.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    huge = raw[:header_end].replace(b"DimSize = 100 120 10", b"DimSize = 100000 100000 100000") + raw[header_end:]
    (tmp_path / "huge.mha").write_bytes(huge)
    with pytest.raises(ScanReadError, match="larger than"):
        read_scan(tmp_path / "huge.mha")
