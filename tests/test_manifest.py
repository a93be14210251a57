"""The manifest is found beside any bundle file and refuses tampered or foreign bundles."""

from __future__ import annotations

import json
import shutil

import pytest

from psf.errors import BundleError
from psf.manifest import load_manifest, verify_file


@pytest.mark.slow
def test_manifest_round_trip_and_tamper_detection(tiny_bundle, tmp_path):
    manifest = load_manifest(tiny_bundle / "map.onnx")
    assert manifest.root == tiny_bundle
    assert manifest.labels == ["other", "grey_matter", "white_matter"]
    assert manifest.payload_bytes("float16") == {"up": 4 * 64 * 64 * 2, "down": 3 * 64 * 64 * 2}
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "map.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        verify_file(load_manifest(copy), "map")
    data = json.loads((copy / "psf.json").read_text())
    data["format"] = "psf-bundle/99"
    (copy / "psf.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="psf-bundle/99"):
        load_manifest(copy)


def test_missing_manifest_says_how_to_make_one(tmp_path):
    (tmp_path / "map.onnx").write_bytes(b"")
    with pytest.raises(BundleError, match="psf-export"):
        load_manifest(tmp_path / "map.onnx")
