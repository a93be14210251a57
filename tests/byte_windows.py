"""Byte windows of a buffer, for the boundary tests: a secret (pixels, weights) crossed only if one of its windows
shows up in what the other side received."""

from __future__ import annotations

import numpy as np


def byte_windows(buffer: bytes, size: int = 16, count: int = 200, seed: int = 0) -> list[bytes]:
    """`count` windows of `size` bytes from the buffer, skipping windows of one repeated byte (background)."""
    rng = np.random.default_rng(seed)
    picked = []
    for start in rng.integers(0, len(buffer) - size, count * 4):
        window = buffer[start : start + size]
        if len(set(window)) > 4:
            picked.append(window)
        if len(picked) == count:
            break
    return picked
