"""2D images in (PNG, TIFF, JPEG, BMP; 8 or 16 bit) and PNG masks out, with Pillow.

RGB(A) and palette images are converted to luminance (ITU-R 601-2, Pillow's "L"); 16-bit and float
greyscale keep their values. A mask is always a PNG (lossless), whatever the scan's format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.errors import ScanReadError
from psf.io.atomic import atomic_path
from psf.io.scan import ReadOptions, Scan

IMAGE2D_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
MAX_PIXELS = 16384 * 16384


def read_image2d(path: str | Path, options: ReadOptions = ReadOptions()) -> Scan:
    """Read a 2D image as a (rows, cols, 1) float32 Scan; multi-page TIFFs are refused."""
    from PIL import Image

    path = Path(path)
    _check_png_end(path)
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ScanReadError(path, f"declared size {img.width}x{img.height} is too large")
            if getattr(img, "n_frames", 1) > 1:
                raise ScanReadError(path, f"{img.n_frames}-page image; psf reads single-page 2D images")
            img.load()
            if img.mode in ("RGB", "RGBA", "P", "LA"):
                img = img.convert("L")
            pixels = np.asarray(img, dtype=np.float32)
    except ScanReadError:
        raise
    except Exception as exc:  # Pillow raises several types for broken files
        raise ScanReadError(path, f"not a readable {path.suffix.lstrip('.').upper() or '2D'} image ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ScanReadError(path, f"expected a 2D image, got shape {pixels.shape}")
    return Scan(pixels=pixels[:, :, None], format="image2d")


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _check_png_end(path: Path) -> None:
    """Pillow decodes a PNG that lost its end; the IEND chunk must be there (else: truncated file)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != b"\x89PNG\r\n\x1a\n":
                return  # not a PNG (TIFF, JPEG, ... or junk): Pillow decides
            handle.seek(-len(PNG_END), 2)
            if handle.read() != PNG_END:
                raise ScanReadError(path, "PNG file has no IEND chunk at its end; the file is truncated")
    except OSError as exc:
        raise ScanReadError(path, f"cannot read the file ({exc})") from exc


def write_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write a (rows, cols) or (rows, cols, 1) label mask as an 8-bit PNG holding the label values."""
    from PIL import Image

    labels = np.asarray(mask).reshape(mask.shape[0], mask.shape[1]).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(labels, mode="L").save(tmp, format="PNG")
    return Path(path)
