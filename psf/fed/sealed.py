"""The explicit fallback where homomorphic encryption is impossible: the hospitals aggregate.

TenSEAL has no wheels for some platforms (none for aarch64, so none for Jetson). There, and only when
asked (`--aggregator hospitals`), each hospital seals its update (n * weights, n) with AES-256-GCM
under a key the hospitals share and the hub never gets; the hub relays every sealed update to every
hospital, and each hospital opens them and averages by itself. The hub still sees no plain weights;
what is given up against CKKS: every hospital sees every other hospital's weights, and the hub sends
N updates to each hospital instead of one sum.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from psf.errors import PsfError
from psf.io.atomic import write_bytes_atomic

KEY_NAME = "aggregation.key"
PREFIX = "sealed."  # parameter names of the relayed updates: sealed.<site>


def new_key(folder: Path) -> Path:
    path = write_bytes_atomic(Path(folder) / KEY_NAME, os.urandom(32))
    path.chmod(0o600)
    return path


def load_key(path: Path) -> bytes:
    path = Path(path)
    if not path.is_file() or path.stat().st_size != 32:
        raise PsfError(f"{path}: not a 32-byte aggregation key; make the consortium's with: psf fed keys --aggregator hospitals")
    return path.read_bytes()


def seal(key: bytes, vector: np.ndarray) -> np.ndarray:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    data = AESGCM(key).encrypt(nonce, np.asarray(vector, dtype=np.float64).tobytes(), b"psf-fed-update")
    return np.frombuffer(nonce + data, dtype=np.uint8)


def open_sealed(key: bytes, blob: np.ndarray) -> np.ndarray:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = np.asarray(blob, dtype=np.uint8).tobytes()
    try:
        return np.frombuffer(AESGCM(key).decrypt(raw[:12], raw[12:], b"psf-fed-update"), dtype=np.float64)
    except InvalidTag:
        raise PsfError("a relayed update does not open with this hospital's aggregation key (another consortium's key?)") from None
