"""PNG slices in and PNG masks out (Pillow). RGB is converted to luminance (ITU-R 601-2, Pillow's "L")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.errors import ScanReadError
from psf.io.atomic import atomic_path
from psf.io.scan import Scan

MAX_PIXELS = 16384 * 16384


def read_png(path: str | Path) -> Scan:
    """Read an 8/16-bit grey or RGB PNG as a (rows, cols, 1) float32 Scan."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ScanReadError(path, f"declared size {img.width}x{img.height} is too large")
            img.load()
            if img.mode in ("RGB", "RGBA", "P", "LA"):
                img = img.convert("L")
            pixels = np.asarray(img, dtype=np.float32)
    except ScanReadError:
        raise
    except Exception as exc:  # Pillow raises several types for broken files
        raise ScanReadError(path, f"not a readable PNG image ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ScanReadError(path, f"expected a 2D image, got shape {pixels.shape}")
    return Scan(pixels=pixels[:, :, None], format="png")


def write_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write a (rows, cols) or (rows, cols, 1) label mask as an 8-bit PNG holding the label values."""
    from PIL import Image

    labels = np.asarray(mask).reshape(mask.shape[0], mask.shape[1]).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(labels, mode="L").save(tmp, format="PNG")
    return Path(path)
