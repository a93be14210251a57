"""Nothing but encoded latents leaves the client: every byte psf-infer --server sends is captured at a
loopback proxy and searched for canary tokens planted in DICOM header fields, file and folder names,
and for the raw and normalized pixel buffers.

HTTP is captured as plain text, headers included. gRPC headers are HPACK-coded (possibly Huffman), so
for gRPC the search covers the bodies; the same client code builds both requests and sets no headers.
"""

from __future__ import annotations

import secrets

import nibabel as nib
import numpy as np
import pydicom
import pytest

from psf.manifest import load_manifest
from psf.pipeline.preprocess import normalize
from tests.conftest import run_cli
from tests.io.dicom_factory import write_series
from tests.byte_windows import byte_windows

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_only_latents_cross_the_wire(map_server, tiny_bundle, mni_data, tmp_path, capture_proxy, scheme):
    token = f"CANARY{secrets.token_hex(6).upper()}"
    volume = np.asarray(nib.load(sorted((mni_data / "test" / "images").iterdir())[0]).dataobj, dtype=np.float32)
    folder = tmp_path / f"{token}-DIR"
    files = write_series(folder, volume * 4.0, canary=token, names=[f"{token}-FILE-{k}.dcm" for k in range(volume.shape[2])])
    upstream = map_server.grpc_port if scheme == "grpc" else map_server.http_port
    proxy = capture_proxy(upstream)

    result = run_cli("infer", "--engine", str(tiny_bundle), str(folder), "-o", str(tmp_path / "out"), "-q",
                     "--server", f"{scheme}://127.0.0.1:{proxy.port}", "--request-slices", "2", check=True)
    assert f"{volume.shape[2]} slices" in result.stdout
    sent = bytes(proxy.sent)
    assert sent, "the proxy saw no traffic: the client did not go through it"

    # 1. Canary tokens from the header fields and the file and folder names, in the encodings a leak would use.
    for form in (token, token.lower(), token.encode("utf-16-le").decode("latin-1")):
        assert form.encode("latin-1") not in sent, f"{form!r} left the client"
    header = pydicom.dcmread(files[0])
    for value in (str(header.PatientName), header.PatientID, header.InstitutionName, header.StudyInstanceUID,
                  header.SeriesInstanceUID, header.SOPInstanceUID):
        assert value.encode() not in sent, f"DICOM value {value!r} left the client"

    # 2. The pixels: raw stored buffer, and the normalized image as float32 and float16 (what a careless
    #    client would send instead of the latent).
    raw = b"".join(pydicom.dcmread(f).PixelData for f in files)
    normalized = normalize(volume * 4.0, load_manifest(tiny_bundle).normalization)
    for buffer in (raw, normalized.astype(np.float32).tobytes(), normalized.astype(np.float16).tobytes()):
        leaked = [w for w in byte_windows(buffer) if w in sent]
        assert not leaked, f"{len(leaked)} pixel windows found in the traffic"

    # 3. The size: the slices' fp16 latents, plus framing; nothing else big can hide in it.
    latent_bytes = volume.shape[2] * load_manifest(tiny_bundle).payload_bytes("float16")["up"]
    assert latent_bytes <= len(sent) <= latent_bytes + 16 * 1024, f"{len(sent)} bytes sent for {latent_bytes} of latents"
