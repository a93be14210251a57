"""The consortium key: an exact, invertible, bounded channel transform; a client-only file; keyed training,
export (key folded into encoder and decoder only) and audit."""

from __future__ import annotations

import json
import stat

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from psf.errors import PsfError, UsageError
from psf.models.key import ConsortiumKey, require_key
from tests.conftest import TINY_SIZES, run_cli


def test_inverse_undoes_forward_and_keyed_latents_stay_in_range():
    key = ConsortiumKey.generate(4, 3, seed=1)
    z = torch.rand(5, 4, 16, 16) * 2 - 1
    keyed = key.image.forward_module()(z)
    assert keyed.abs().max() < 1  # the mapping net ends in tanh: it must be able to produce keyed latents
    torch.testing.assert_close(key.image.inverse_module()(keyed), z, atol=1e-5, rtol=0)
    extreme = torch.tensor([1.0, -1.0, 1.0]).reshape(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert key.mask.forward_module()(extreme).abs().max() < 1
    assert not torch.allclose(keyed[:, :3], z[:, :3], atol=0.1)  # the channels really are mixed


def test_key_file_is_private_round_trips_and_refuses_tampering(tmp_path):
    key = ConsortiumKey.generate(4, 3, seed=2)
    path = key.save(tmp_path / "key.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = ConsortiumKey.load(path)
    assert loaded.key_id == key.key_id and np.allclose(loaded.image.matrix, key.image.matrix)
    data = json.loads(path.read_text())
    data["image"]["offset"][0] += 0.1
    path.write_text(json.dumps(data))
    with pytest.raises(PsfError, match="key_id does not match"):
        ConsortiumKey.load(path)
    data["image"]["matrix"][0][0] += 0.5
    path.write_text(json.dumps(data))
    with pytest.raises(PsfError, match="not orthogonal"):
        ConsortiumKey.load(path)
    assert ConsortiumKey.generate(4, 3).key_id != ConsortiumKey.generate(4, 3).key_id  # fresh randomness each time


def test_key_must_match_the_model():
    key = ConsortiumKey.generate(4, 3, seed=3)
    with pytest.raises(UsageError, match="--image-channels 8 --mask-channels 3"):
        key.check_fits(8, 3)
    with pytest.raises(UsageError, match="pass --key"):
        require_key(None, key.key_id, "model.pt")
    with pytest.raises(UsageError, match="trained with key none"):
        require_key(key, None, "model.pt")
    require_key(key, key.key_id, "model.pt")


def test_psf_key_new(tmp_path):
    path = tmp_path / "k.json"
    result = run_cli("key", "new", str(path), "--image-channels", "4", "--mask-channels", "3", check=True)
    assert ConsortiumKey.load(path).key_id in result.stdout
    again = run_cli("key", "new", str(path))
    assert again.returncode == 1 and "--overwrite" in again.stderr


@pytest.fixture(scope="module")
def keyed(mni_data, tmp_path_factory):
    from psf.models.config import ModelConfig
    from psf.train.run import TrainOptions, run_training

    root = tmp_path_factory.mktemp("keyed")
    key = ConsortiumKey.generate(4, 3, seed=4)
    key.save(root / "key.json")
    run_training(TrainOptions(data=mni_data, out=root / "model.pt", model=ModelConfig(**TINY_SIZES), minutes=None,
                              stage_epochs={"image_ae": 4, "mask_ae": 3, "mapping": 15}, views=2, seed=0, quiet=True,
                              key=root / "key.json"))
    return root, key


@pytest.mark.slow
def test_keyed_model_records_only_the_key_id_and_exports_only_with_its_key(keyed, tmp_path):
    root, key = keyed
    ckpt = torch.load(root / "model.pt", weights_only=True)
    assert ckpt["key_id"] == key.key_id
    assert "matrix" not in json.dumps(ckpt["training"]) and str(key.image.matrix[0, 0]) not in json.dumps(ckpt["training"])
    result = run_cli("export", str(root / "model.pt"), "-o", str(tmp_path / "nokey"), "--precision", "fp32")
    assert result.returncode == 1 and f"trained with consortium key {key.key_id}" in result.stderr
    ConsortiumKey.generate(4, 3, seed=5).save(tmp_path / "other.json")
    result = run_cli("export", str(root / "model.pt"), "-o", str(tmp_path / "other"), "--key", str(tmp_path / "other.json"),
                     "--precision", "fp32")
    assert result.returncode == 1 and "use the key the model was trained with" in result.stderr


@pytest.mark.slow
def test_key_is_folded_into_the_client_graphs_only(keyed, tmp_path):
    from psf.export.onnx import export_bundle
    from psf.manifest import load_manifest
    from psf.runtime.ort import OrtRunner
    from psf.train.checkpoint import load_checkpoint

    root, key = keyed
    bundle = tmp_path / "bundle"
    export_bundle(root / "model.pt", bundle, key=key)  # parity against torch with the key is checked inside
    manifest = load_manifest(bundle)
    assert manifest.key_id == key.key_id and "matrix" not in (bundle / "psf.json").read_text()

    def weights(name):
        return [numpy_helper.to_array(t) for t in onnx.load(str(bundle / name)).graph.initializer]

    lock = (key.image.matrix / key.image.scale).astype(np.float32)
    has_lock = lambda name: any(w.shape == (4, 4, 1, 1) and np.allclose(w[:, :, 0, 0], lock) for w in weights(name))  # noqa: E731
    assert has_lock("encoder.onnx") and not has_lock("map.onnx")  # the server's graph holds no key
    nets, _ = load_checkpoint(root / "model.pt")
    images = np.random.default_rng(0).random((2, 1, 256, 256), dtype=np.float32)
    with OrtRunner(bundle / "encoder.onnx") as enc:
        sent = enc.infer({"image": images})["z_image"]
    with torch.no_grad():
        plain = nets.image_encoder(torch.from_numpy(images))
        expected = key.image.forward_module()(plain).numpy()
    np.testing.assert_allclose(sent, expected, atol=1e-5)
    assert np.abs(sent - plain.numpy()).mean() > 0.05  # what leaves the client is not the plain latent


@pytest.mark.slow
def test_audit_with_a_key_runs_the_wrong_key_attacks(keyed, mni_data, tmp_path):
    root, key = keyed
    result = run_cli("audit", str(root / "model.pt"), str(mni_data), "-o", str(tmp_path / "a"), "--minutes", "0.2", "-q")
    assert result.returncode == 1 and "pass --key" in result.stderr
    run_cli("audit", str(root / "model.pt"), str(mni_data), "-o", str(tmp_path / "a"), "--minutes", "0.2", "-q",
            "--key", str(root / "key.json"), check=True)
    report = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert report["key_id"] == key.key_id
    attacks = report["leaked_decoder"]["attacks"]
    assert {"own decoder, no key", "own decoder, a guessed key", "another center's decoder, its own key",
            "another center's decoder, same key (a member)"} == set(attacks)
    keyless = {n: a for n, a in attacks.items() if "member" not in n}
    assert report["leaked_decoder_ssim"] == max(a["ssim"] for a in keyless.values())
    assert report["leaked_decoder"]["attack"] in keyless
    fitted = report["leaked_decoder"]["after_intensity_fit_k10"]
    assert fitted["ssim"] == max(a["after_intensity_fit_k10"]["ssim"] for a in keyless.values()) and fitted["attack"] in keyless
