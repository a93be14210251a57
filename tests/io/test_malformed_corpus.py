"""A corpus of >= 500 malformed scans (NIfTI, PNG, TIFF, JPEG, BMP, DICOM, MHA, NRRD), generated here: every one is refused with a ScanReadError that
names the file; none crashes, hangs or loads silently.

Cases: truncations at many offsets of real NIfTI (.nii, .nii.gz), PNG, TIFF and DICOM files; header
fields mutated into impossible values; empty files; non-image bytes behind scan suffixes; huge
declared sizes.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from psf.data.mni152 import TEMPLATE_FILES, template_dir
from psf.errors import ScanReadError
from psf.io import ReadOptions, find_scans, read_source


def _originals(folder: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    t1 = nib.load(template_dir() / TEMPLATE_FILES["t1"])
    small = nib.Nifti1Image(np.asarray(t1.dataobj)[60:124, 70:134, 90:94].astype(np.int16), t1.affine)
    nib.save(small, folder / "src.nii")
    plane = np.asarray(t1.dataobj)[30:130, 40:160, 94].astype(np.uint8)
    Image.fromarray(plane).save(folder / "src.png")
    Image.fromarray(plane.astype(np.uint16) * 200).save(folder / "src.tif")
    noise = rng.integers(0, 255, (64, 64), dtype=np.uint8)  # incompressible, so truncations cut pixel data
    Image.fromarray(noise).save(folder / "noise.png")
    raw_nii = (folder / "src.nii").read_bytes()
    import SimpleITK as sitk

    volume = sitk.GetImageFromArray(np.asarray(small.dataobj).T)
    sitk.WriteImage(volume, str(folder / "src.mha"))
    sitk.WriteImage(volume, str(folder / "src.nrrd"))
    return {
        ".nii": raw_nii,
        ".nii.gz": gzip.compress(raw_nii),
        ".png": (folder / "src.png").read_bytes(),
        "-noise.png": (folder / "noise.png").read_bytes(),
        ".tif": (folder / "src.tif").read_bytes(),
        ".dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes(),
        "-mr.dcm": Path(get_testdata_file("MR_small.dcm")).read_bytes(),
        ".mha": (folder / "src.mha").read_bytes(),
        ".nrrd": (folder / "src.nrrd").read_bytes(),
    }


def _nifti_header_mutations(raw: bytes) -> list[tuple[str, bytes]]:
    """Impossible NIfTI-1 header values (little-endian offsets from the standard)."""
    def put(offset: int, fmt: str, *values) -> bytes:
        data = bytearray(raw)
        struct.pack_into("<" + fmt, data, offset, *values)
        return bytes(data)

    cases = [("sizeof_hdr", put(0, "i", 123)), ("magic", put(344, "4s", b"xx1\0")),
             ("vox_offset_past_end", put(108, "f", float(len(raw) + 4096))), ("datatype", put(70, "h", 999)),
             ("bitpix", put(72, "h", 0)), ("dim0_zero", put(40, "h", 0)), ("dim0_nine", put(40, "h", 9))]
    for axis in (1, 2, 3):
        cases.append((f"dim{axis}_zero", put(40 + 2 * axis, "h", 0)))
        cases.append((f"dim{axis}_negative", put(40 + 2 * axis, "h", -5)))
        cases.append((f"dim{axis}_huge", put(40 + 2 * axis, "h", 32000)))
    cases.append(("all_dims_huge", put(42, "hhh", 32000, 32000, 32000)))
    return cases


def _dicom_mutations(folder: Path) -> list[tuple[str, bytes]]:
    import pydicom

    cases = []
    for name, change in [("rows_zero", lambda ds: setattr(ds, "Rows", 0)),
                         ("rows_huge", lambda ds: setattr(ds, "Rows", 65535)),
                         ("bits_allocated", lambda ds: setattr(ds, "BitsAllocated", 7)),
                         ("frames_huge", lambda ds: setattr(ds, "NumberOfFrames", 100000)),
                         ("no_pixels", lambda ds: delattr(ds, "PixelData")),
                         ("short_pixels", lambda ds: setattr(ds, "PixelData", ds.PixelData[:-100]))]:
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        change(ds)
        path = folder / "mut.dcm"
        ds.save_as(path)
        cases.append((name, path.read_bytes()))
    return cases


def _dicom_pixel_end(raw: bytes) -> int:
    """Byte offset just past the last pixel-data byte of an uncompressed DICOM file."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(raw))
    start = raw.rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010) tag, little endian
    return start + raw[start:].index(ds.PixelData[-16:]) + 16


def build_corpus(folder: Path) -> list[Path]:
    originals = _originals(folder / "src")
    cases: list[tuple[str, str, bytes]] = []
    for suffix, raw in originals.items():
        # Truncations: dense in the header, spread over the data, always short of the end. A DICOM cut
        # after the pixel data only loses trailing padding (the volume is complete): those are not cases.
        end = _dicom_pixel_end(raw) if suffix.endswith(".dcm") else len(raw)
        cuts = sorted({*range(0, min(end, 400), 16), *np.linspace(400, end - 1, 40, dtype=int).tolist()})
        cases += [(f"cut{cut}", suffix, raw[:cut]) for cut in cuts if cut < len(raw)]
    cases += [(f"hdr-{name}", ".nii", data) for name, data in _nifti_header_mutations(originals[".nii"])]
    cases += [(f"hdr-{name}", ".nii.gz", gzip.compress(data)) for name, data in _nifti_header_mutations(originals[".nii"])]
    cases += [(f"dcm-{name}", ".dcm", data) for name, data in _dicom_mutations(folder / "src")]
    junk = {"empty": b"", "text": b"patient list\nnot an image\n" * 20, "zeros": b"\0" * 4096,
            "random": np.random.default_rng(1).bytes(5000), "html": b"<html><body>404</body></html>"}
    for suffix in (".nii", ".nii.gz", ".png", ".tif", ".jpg", ".bmp", ".dcm", ".mha", ".nrrd"):
        cases += [(f"junk-{name}", suffix, data) for name, data in junk.items()]
    paths = []
    for index, (name, suffix, data) in enumerate(cases):
        path = folder / "corpus" / f"{index:04d}-{name}{suffix}"
        if suffix.endswith(".dcm"):  # one folder per DICOM case, or discovery groups them into one series
            path = path.parent / path.stem / path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_every_malformed_scan_is_refused_with_its_name(tmp_path):
    paths = build_corpus(tmp_path)
    assert len(paths) >= 500
    sources = find_scans([tmp_path / "corpus"])
    assert len(sources) == len(paths)  # every file is a scan candidate (by suffix)
    loaded, wrong = [], []
    for source in sources:
        try:
            read_source(source, ReadOptions(time_limit_s=10))
            loaded.append(source.path.name)
        except ScanReadError as exc:
            if source.path.name not in str(exc):
                wrong.append((source.path.name, str(exc)))
    assert not loaded, f"{len(loaded)} corrupt files loaded silently: {loaded[:10]}"
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("suffix", [".nii", ".png"])
def test_a_valid_file_of_the_corpus_still_loads(tmp_path, suffix):
    originals = _originals(tmp_path)
    path = tmp_path / f"ok{suffix}"
    path.write_bytes(originals[suffix])
    assert read_source(find_scans([path])[0]).pixels.size > 0
