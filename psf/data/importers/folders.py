"""A plain pair of folders of 2D images and masks: SRC/images/NAME.EXT and SRC/masks/NAME.EXT (or NAME_mask.EXT).

Images: PNG, JPEG, TIFF, BMP or single-frame DICOM; RGB (e.g. ultrasound frames) becomes one grey channel
(ITU-R 601 luminance); images that are not 8-bit are scaled to 0..255 between their 0.5 and 99.5 percentiles.
Masks: single-channel label images (PNG/TIFF/BMP; a lossy JPEG mask is refused); their distinct values over the
whole data set become labels 0..K-1 in increasing order (e.g. 0/128/255 -> 0/1/2), named label_1.. unless --labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.data.dataset import DatasetError
from psf.data.importers.source import CaseData, RawCase, RawDataset, consecutive_labels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")


def is_folders(src: Path) -> bool:
    return (src / "images").is_dir() and (src / "masks").is_dir()


def read_folders(src: Path, label_names: list[str] | None = None) -> RawDataset:
    pairs = _pairs(src)
    values: set[int] = set()
    for case, _, mask in pairs:
        values |= set(np.unique(_read_mask(case, mask)).tolist())
    values_sorted = sorted(values | {0})
    if len(values_sorted) < 2:
        raise DatasetError(f"{src / 'masks'}: every mask is empty (only 0); nothing to learn")
    names = label_names or ["background", *(f"label_{i}" for i in range(1, len(values_sorted)))]
    if len(names) != len(values_sorted):
        raise DatasetError(f"--labels names {len(names)} labels, but the masks in {src / 'masks'} hold {len(values_sorted)} "
                           f"values {values_sorted} (background 0 included)")
    cases = [RawCase(case, lambda case=case, image=image, mask=mask: _load(case, image, mask, values_sorted))
             for case, image, mask in pairs]
    return RawDataset(layout="folders", path=src, name=src.name, modality="other", channels=["image"], labels=names,
                      values=values_sorted, file_ending=".png", cases=cases,
                      extra={"mask_values": values_sorted})


def _pairs(src: Path) -> list[tuple[str, Path, Path]]:
    images = sorted(p for p in (src / "images").iterdir() if p.is_file() and not p.name.startswith(".")
                    and (p.suffix.lower() in IMAGE_SUFFIXES or _is_dicom(p)))
    if not images:
        raise DatasetError(f"{src / 'images'}: no images ({', '.join(IMAGE_SUFFIXES)} or DICOM)")
    masks = {}
    for p in (src / "masks").iterdir():
        if p.is_file() and not p.name.startswith("."):
            masks.setdefault(p.stem, p)
            masks.setdefault(p.stem.removesuffix("_mask"), p)
    pairs, seen = [], {}
    for image in images:
        case = image.stem if image.suffix.lower() in IMAGE_SUFFIXES else image.name
        if case in seen:
            raise DatasetError(f"case {case!r}: {seen[case].name} and {image.name} share a name; rename one")
        seen[case] = image
        mask = masks.get(case)
        if mask is None:
            raise DatasetError(f"case {case!r}: {image} has no mask in {src / 'masks'} (expected {case}.png or {case}_mask.png)")
        pairs.append((case, image, mask))
    return pairs


def _is_dicom(path: Path) -> bool:
    from psf.io.dicom import looks_like_dicom

    return looks_like_dicom(path)


def _read_mask(case: str, path: Path) -> np.ndarray:
    from PIL import Image

    if path.suffix.lower() not in MASK_SUFFIXES:
        raise DatasetError(f"case {case!r}: mask {path} is not PNG/TIFF/BMP; lossy formats (JPEG) change label values")
    try:
        with Image.open(path) as img:
            mode = img.mode
            array = np.asarray(img)
    except Exception as exc:  # Pillow raises several types for broken files
        raise DatasetError(f"case {case!r}: mask {path} is not readable ({type(exc).__name__}: {exc})") from exc
    if array.ndim == 3:
        if mode in ("RGB", "RGBA") and (array[..., :3] == array[..., :1]).all():
            array = array[..., 0]
        else:
            raise DatasetError(f"case {case!r}: mask {path} is a colour image; save masks as single-channel label images")
    return array


def _read_image(case: str, path: Path) -> np.ndarray:
    """(rows, cols) uint8 grey."""
    if path.suffix.lower() in (".dcm", ".dicom") or path.suffix.lower() not in IMAGE_SUFFIXES:
        grey = _read_dicom_2d(case, path)
    else:
        from PIL import Image

        try:
            with Image.open(path) as img:
                if getattr(img, "n_frames", 1) > 1:
                    raise DatasetError(f"case {case!r}: {path} has {img.n_frames} frames; psf imports single 2D images")
                img.load()
                if img.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                    img = img.convert("L")
                grey = np.asarray(img)
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(f"case {case!r}: {path} is not a readable image ({type(exc).__name__}: {exc})") from exc
    if grey.ndim != 2:
        raise DatasetError(f"case {case!r}: {path} has shape {grey.shape}; expected a 2D image")
    return _to_uint8(grey)


def _read_dicom_2d(case: str, path: Path) -> np.ndarray:
    from psf.io.dicom import _pydicom

    try:
        ds = _pydicom().dcmread(path)
        array = ds.pixel_array
    except Exception as exc:
        raise DatasetError(f"case {case!r}: {path} is not a readable DICOM image ({type(exc).__name__}: {exc})") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DatasetError(f"case {case!r}: {path} is a {frames}-frame DICOM (a cine loop?); export single frames")
    if array.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 3:
        rgb = array.astype(np.float32)
        return np.round(rgb @ np.array([0.299, 0.587, 0.114], np.float32)).clip(0, 255).astype(np.uint8)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return array.astype(np.float32) * slope + intercept


def _to_uint8(grey: np.ndarray) -> np.ndarray:
    if grey.dtype == np.uint8:
        return grey
    lo, hi = np.percentile(grey, [0.5, 99.5])
    return np.round(np.clip((grey.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)


def _load(case: str, image: Path, mask: Path, values: list[int]) -> CaseData:
    grey = _read_image(case, image)
    label = _read_mask(case, mask)
    if label.shape != grey.shape:
        raise DatasetError(f"case {case!r}: mask {mask.name} is {label.shape[1]}x{label.shape[0]}, the image "
                           f"{grey.shape[1]}x{grey.shape[0]}; they must match pixel for pixel")
    return CaseData([grey], consecutive_labels(case, label, values, mask))
