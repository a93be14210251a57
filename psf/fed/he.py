"""Homomorphic encryption of autoencoder updates: CKKS (TenSEAL), keys held by the hospitals only.

Why psf's own and not NVFlare's HE filters (FedAvgRecipeWithHE): NVFlare's HE recipe refuses its
simulator, and its server keeps a plain initial model and persists the global model. Here every
hospital encrypts `n * weights` (n its training slices) together with `n` into one CKKS vector; the hub
loads only the public context (no secret key), adds the ciphertexts and returns the sum; each hospital
decrypts and divides by the summed n. The hub thus never holds any hospital's weights, nor the
average, nor even the slice counts. The same code runs in the simulator, PoC and production.

Parameters: poly modulus 8192, coefficient moduli [60, 40, 40, 60], scale 2^40 (128-bit security
per the HE standard); the decryption error on the demo's weights is ~1e-8, far below training noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.errors import MissingDependency, PsfError
from psf.io.atomic import write_bytes_atomic

SECRET_NAME = "he-secret.tenseal"  # the hospitals' context (secret key): never given to the hub
PUBLIC_NAME = "he-public.tenseal"  # the hub's context: encrypt and add only


def _tenseal():
    try:
        import tenseal
    except ImportError as exc:
        # No TenSEAL wheel exists for aarch64 (Jetson): there the only other way is the explicit one.
        raise MissingDependency("TenSEAL (homomorphic encryption; where it cannot be installed, e.g. aarch64, "
                                "`--aggregator hospitals` lets the hospitals aggregate instead)", "federated") from exc
    return tenseal


def new_contexts(folder: Path) -> tuple[Path, Path]:
    """Write a fresh consortium pair: (secret context for every hospital, public context for the hub)."""
    ts = _tenseal()
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    ctx.global_scale = 2**40
    secret = write_bytes_atomic(Path(folder) / SECRET_NAME, ctx.serialize(save_secret_key=True))
    secret.chmod(0o600)
    ctx.make_context_public()
    public = write_bytes_atomic(Path(folder) / PUBLIC_NAME, ctx.serialize())
    return secret, public


def load_context(path: Path, need_secret: bool):
    """A serialized TenSEAL context; the hub's must not hold a secret key, a hospital's must."""
    ts = _tenseal()
    path = Path(path)
    if not path.is_file():
        raise PsfError(f"{path}: no HE context; make the consortium keys with: psf fed keys DIR (it writes {SECRET_NAME} and {PUBLIC_NAME})")
    ctx = ts.context_from(path.read_bytes())
    if ctx.is_private() != need_secret:
        role = "a hospital needs the secret context" if need_secret else "the hub must get the public context only"
        raise PsfError(f"{path}: {role} ({SECRET_NAME if need_secret else PUBLIC_NAME})")
    return ctx


def encrypt(ctx, vector: np.ndarray) -> np.ndarray:
    """CKKS-encrypt a float vector; returns the ciphertext as uint8 bytes (what goes on the wire)."""
    data = _tenseal().ckks_vector(ctx, np.asarray(vector, dtype=np.float64).tolist()).serialize()
    return np.frombuffer(data, dtype=np.uint8)


def add(public_ctx, ciphertexts: list[np.ndarray]) -> np.ndarray:
    """The hub's whole share of the averaging: the sum of the ciphertexts, still encrypted."""
    ts = _tenseal()
    total = ts.ckks_vector_from(public_ctx, ciphertexts[0].tobytes())
    for c in ciphertexts[1:]:
        total += ts.ckks_vector_from(public_ctx, c.tobytes())
    return np.frombuffer(total.serialize(), dtype=np.uint8)


def decrypt(secret_ctx, ciphertext: np.ndarray) -> np.ndarray:
    return np.asarray(_tenseal().ckks_vector_from(secret_ctx, ciphertext.tobytes()).decrypt(), dtype=np.float64)
