"""Readers and writers on real files: geometry survives, bad files give ScanReadError naming the file."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from psf.data.mni152 import TEMPLATE_FILES, template_dir
from psf.errors import ScanReadError
from psf.io import find_scans, mask_path, read_scan, write_mask


@pytest.fixture(scope="module")
def t1_path():
    return template_dir() / TEMPLATE_FILES["t1"]


def test_reads_real_mni152_template(t1_path):
    scan = read_scan(t1_path)
    assert scan.pixels.shape == (197, 233, 189)
    assert scan.pixels.dtype == np.float32
    assert scan.pixels.max() == 255
    np.testing.assert_allclose(scan.geometry.affine[:3, 3], [-98, -134, -72])


def test_mask_keeps_affine_and_codes_of_oblique_scan(tmp_path):
    rotation = np.array([[0.96, -0.28, 0], [0.28, 0.96, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.8, 0.9, 2.5])
    affine[:3, 3] = [10.5, -20.25, 33.0]
    img = nib.Nifti1Image(np.random.default_rng(0).random((20, 30, 5)).astype(np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    src = tmp_path / "oblique.nii.gz"
    nib.save(img, src)
    scan = read_scan(src)
    out = write_mask(tmp_path / "out.nii.gz", np.ones(scan.pixels.shape, np.uint8), scan)
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, nib.load(src).affine, atol=1e-6)
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
    assert written.get_data_dtype() == np.uint8
    # World coordinates of a far voxel agree to well under 1e-4 mm (NIfTI stores float32).
    corner = np.array([19, 29, 4, 1])
    assert np.abs(written.affine @ corner - nib.load(src).affine @ corner).max() < 1e-4


def test_png_rgb_becomes_luminance_and_16bit_is_kept(tmp_path):
    rgb = np.zeros((12, 10, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    scan = read_scan(tmp_path / "rgb.png")
    assert scan.pixels.shape == (12, 10, 1)
    assert scan.pixels[0, 0, 0] == pytest.approx(200 * 0.299, abs=1)
    deep = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert read_scan(tmp_path / "deep.png").pixels.max() == deep.max()


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_bad_png_names_the_file(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(ScanReadError) as info:
        read_scan(bad)
    assert "bad.png" in str(info.value)


def test_truncated_nifti_is_refused_not_zero_filled(tmp_path, t1_path):
    raw = gzip.decompress(t1_path.read_bytes())
    for cut in (100, 348, 10_000, len(raw) // 2, len(raw) - 1):
        bad = tmp_path / f"cut{cut}.nii"
        bad.write_bytes(raw[:cut])
        with pytest.raises(ScanReadError) as info:
            read_scan(bad)
        assert bad.name in str(info.value)


def test_4d_and_unknown_suffix_are_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), tmp_path / "fmri.nii.gz")
    with pytest.raises(ScanReadError, match="--volume-index"):
        read_scan(tmp_path / "fmri.nii.gz")
    from psf.io import ReadOptions

    assert read_scan(tmp_path / "fmri.nii.gz", ReadOptions(volume_index=2)).pixels.shape == (4, 4, 4)
    with pytest.raises(ScanReadError, match="outside 0..2"):
        read_scan(tmp_path / "fmri.nii.gz", ReadOptions(volume_index=3))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ScanReadError, match="unknown scan format"):
        read_scan(tmp_path / "notes.txt")


def test_discovery_mirrors_the_input_tree(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.nii.gz", "a/b/y.png", "a/b/readme.txt"):
        (tmp_path / name).write_bytes(b"")
    found = find_scans([tmp_path / "a"])
    assert sorted(s.path.name for s in found) == ["x.nii.gz", "y.png"]
    out = mask_path(tmp_path / "a/b/y.png", tmp_path / "a", tmp_path / "out", "image2d")
    assert out == tmp_path / "out" / "b" / "y_mask.png"
    assert mask_path(tmp_path / "a/x.nii.gz", tmp_path / "a", tmp_path / "o", "nifti").name == "x_mask.nii.gz"


@pytest.mark.parametrize(("suffix", "mode", "dtype"), [(".tif", "I;16", np.uint16), (".bmp", "L", np.uint8),
                                                       (".jpg", "L", np.uint8), (".tiff", "F", np.float32)])
def test_other_2d_formats(tmp_path, suffix, mode, dtype):
    plane = (np.arange(20 * 30).reshape(20, 30) % 200).astype(dtype)
    Image.fromarray(plane).save(tmp_path / f"s{suffix}")
    scan = read_scan(tmp_path / f"s{suffix}")
    assert scan.pixels.shape == (20, 30, 1) and scan.format == "image2d"
    if suffix != ".jpg":  # lossy
        np.testing.assert_array_equal(scan.pixels[:, :, 0], plane.astype(np.float32))


def test_sheared_sform_without_qform_is_kept_exactly(tmp_path):
    affine = np.array([[1.0, 0.3, 0, -10], [0, 1.1, 0, 5], [0, 0.2, 2.0, 7], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.zeros((6, 7, 3), np.int16), None)
    img.set_sform(affine, code=3)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "shear.nii")
    scan = read_scan(tmp_path / "shear.nii")
    written = nib.load(write_mask(tmp_path / "m.nii.gz", np.zeros((6, 7, 3), np.uint8), scan))
    np.testing.assert_allclose(written.get_sform(), affine, atol=1e-6)
    assert int(written.header["sform_code"]) == 3 and int(written.header["qform_code"]) == 0
    np.testing.assert_allclose(written.affine, nib.load(tmp_path / "shear.nii").affine, atol=1e-6)


def test_uncoded_nifti_stays_uncoded(tmp_path):
    img = nib.Nifti1Image(np.zeros((6, 7, 3), np.int16), np.diag([0.5, 0.6, 2.0, 1]))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "plain.nii")
    source = nib.load(tmp_path / "plain.nii")
    written = nib.load(write_mask(tmp_path / "m.nii.gz", np.zeros((6, 7, 3), np.uint8), read_scan(tmp_path / "plain.nii")))
    assert int(written.header["sform_code"]) == 0 and int(written.header["qform_code"]) == 0
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
