"""The federation on NVIDIA FLARE's simulator, tiny budgets: three hospitals, one of which fails.

One run (module fixture) serves every check: the two healthy hospitals each write a model.pt that
psf-export accepts; the failing one is dropped and named while the others finish (min clients 2); what
the hub received (recorded by a server-side result filter, as bytes) holds ciphertexts and latents
only: no canary from the hospitals' folder names or from the failing hospital's error (which names its
file), no pixel windows, no window of any hospital's plain autoencoder weights; and the hub's workspace
holds none of those weights either.
"""

from __future__ import annotations

import json
import secrets
import shutil

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import run_cli
from tests.byte_windows import byte_windows

pytest.importorskip("nvflare", reason="needs the federated extra: pip install 'privacy-sf[federated]'")
pytest.importorskip("tenseal", reason="needs the federated extra: pip install 'privacy-sf[federated]'")
pytestmark = pytest.mark.slow

TOKEN = f"CANARY{secrets.token_hex(5).upper()}"


def _hospital(mni_data, root, name: str, broken: bool = False):
    """A copy of the demo data whose folder name carries the canary (file names are listed in its
    dataset.json, so they stay); `broken`: a corrupt scan whose bytes carry the canary too."""
    site = root / f"{TOKEN}-{name}"
    shutil.copytree(mni_data, site)
    if broken:
        first = sorted((site / "train" / "images").iterdir())[0]
        first.write_bytes(b"not a scan " + TOKEN.encode())
    return site


@pytest.fixture(scope="module")
def fed_run(mni_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fed")
    sites = {n: _hospital(mni_data, root, n, broken=(n == "h3")) for n in ("h1", "h2", "h3")}
    from psf.fed.plan import make_plan
    from psf.fed.run import FedRun, run_sim
    from psf.models.config import ModelConfig
    from psf.train.run import TrainOptions

    opts = TrainOptions(data=root, out=root / "x.pt", model=ModelConfig(client_width=8, map_width=8), minutes=None,
                        stage_epochs={"image_ae": 2, "mask_ae": 2, "mapping": 4}, views=1, quiet=True)
    run = FedRun(out=root / "run", centers=sites, plan=make_plan(opts, rounds=2), min_clients=2, task_timeout=120,
                 record_hub_inbox=root / "inbox")
    report = run_sim(run)
    return run, report, sites


def test_healthy_hospitals_finish_and_the_failed_one_is_named(fed_run):
    run, report, _ = fed_run
    assert set(report["hub"]["dropped"]) == {"h3"}
    assert report["centers"]["h3"] == {"dropped": report["hub"]["dropped"]["h3"]}
    drop = report["hub"]["dropped"]["h3"]  # who, where, why
    assert (drop["task"], drop["round"], drop["attempt"]) == ("psf_ae_round", 1, 1) and "failed" in drop["why"], drop
    assert report["hub"]["status"] == "finished"
    assert [r["sites"] for r in report["hub"]["rounds"]] == [["h1", "h2"], ["h1", "h2"]]
    for name in ("h1", "h2"):
        entry = report["centers"][name]
        assert 0.0 < entry["metrics"]["test"]["mean_dice"] <= 1.0
        assert [t["task"] for t in entry["traffic"]] == ["psf_ae_round", "psf_ae_round", "psf_encode", "psf_finish"]
    # The failed hospital's error, with its file names, stays in its own error.log.
    assert TOKEN in (run.out / "h3" / "error.log").read_text()
    assert not list(run.out.rglob("*.partial*")), "half-written files left behind"


def test_each_hospital_model_exports(fed_run, tmp_path):
    run, _, _ = fed_run
    run_cli("export", str(run.out / "h1" / "model.pt"), "-o", str(tmp_path / "bundle"), "--precision", "fp32", check=True)
    manifest = json.loads((tmp_path / "bundle" / "psf.json").read_text())
    assert manifest["labels"] and all((tmp_path / "bundle" / f).is_file() for f in ("encoder.onnx", "decoder.onnx", "map.onnx"))


def _plain_weight_windows(model_pt) -> list[bytes]:
    """Windows of the hospital's autoencoder weights as float32 and float64 (how plain weights would travel)."""
    import torch

    states = torch.load(model_pt, weights_only=True)["state_dicts"]
    flat = np.concatenate([t.reshape(-1).numpy() for name in ("image_encoder", "image_decoder", "mask_encoder", "mask_decoder")
                           for t in states[name].values() if t.is_floating_point()])
    return (byte_windows(flat.astype(np.float32).tobytes(), count=100)
            + byte_windows(flat.astype(np.float64).tobytes(), count=100))


def test_the_hub_receives_ciphertexts_and_latents_only(fed_run, mni_data):
    from nvflare.apis.utils.decomposers import flare_decomposers
    from nvflare.app_common.decomposers import common_decomposers
    from nvflare.fuel.utils import fobs

    from psf.fed import he

    run, _, sites = fed_run
    inbox = sorted((run.record_hub_inbox).iterdir())
    received = b"".join(p.read_bytes() for p in inbox)
    assert len(inbox) >= 8, [p.name for p in inbox]  # 2 rounds + encode + finish, from 2 hospitals (+ h3's failure)
    for form in (TOKEN, TOKEN.lower(), TOKEN.encode("utf-16-le").decode("latin-1")):
        assert form.encode("latin-1") not in received, f"{form!r} reached the hub"
    for site in sites.values():
        assert str(site).encode() not in received
    volume = np.asarray(nib.load(sorted((mni_data / "train" / "images").iterdir())[0]).dataobj)
    for buffer in (volume.tobytes(), volume.astype(np.float32).tobytes()):
        assert not [w for w in byte_windows(buffer) if w in received], "pixel windows reached the hub"
    for name in ("h1", "h2"):
        assert not [w for w in _plain_weight_windows(run.out / name / "model.pt") if w in received], f"{name}'s weights reached the hub"
    # What each message carries, by name: ciphertexts (the hub's context cannot decrypt them), latents, a done flag.
    flare_decomposers.register()
    common_decomposers.register()
    public = he.load_context(run.out / "hub" / he.PUBLIC_NAME, need_secret=False)
    kinds = {}
    for p in inbox:
        data = fobs.loads(p.read_bytes()).get("DXO", {}).get("data", {})
        kinds.setdefault(tuple(sorted(data)), []).append(data)
    assert set(kinds) <= {("update",), ("groups", "z_image", "z_mask"), ("done",), ()}, set(kinds)
    import tenseal as ts

    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(public, kinds[("update",)][0]["update"].tobytes()).decrypt()
    for pairs in kinds[("groups", "z_image", "z_mask")]:
        assert pairs["z_image"].shape[1:] == (4, 64, 64) and pairs["z_mask"].shape[1:] == (3, 64, 64)


def test_the_hub_workspace_holds_no_plain_weights(fed_run):
    run, report, _ = fed_run
    hub_files = [p for folder in (run.out / "nvflare" / "server", run.out / "hub") for p in folder.rglob("*") if p.is_file()]
    stored = b"".join(p.read_bytes() for p in hub_files)
    assert {"h1.npz", "h2.npz", "map.pt", "carry.npz"} <= {p.name for p in hub_files}  # shards, map, encrypted round state
    for name in ("h1", "h2"):
        assert not [w for w in _plain_weight_windows(run.out / name / "model.pt") if w in stored], f"{name}'s weights at the hub"
    assert TOKEN.encode() not in stored


def test_usage_errors_are_one_line(tmp_path, mni_data):
    result = run_cli("fed", "sim", f"a={mni_data}", "-o", str(tmp_path / "r"), "--epochs", "1")
    assert result.returncode == 1 and "two or more hospitals" in result.stderr
    from psf.errors import UsageError
    from psf.fed.run import FedRun

    with pytest.raises(UsageError, match="--min-clients 3"):
        FedRun(out=tmp_path / "r", centers={"a": mni_data, "b": mni_data}, plan={}, min_clients=3).check()


@pytest.mark.faults
def test_resume_continues_after_the_hubs_last_finished_round(fed_run, tmp_path):
    """--resume: a new run folder takes over the fixture's consortium keys and the hub's saved state (2
    rounds finished), as a run stopped after round 2 would leave them; with --rounds 3 the hub resumes after
    round 2, runs round 3 only from its saved encrypted sum, and keeps the first attempt's drop in its report.
    (Killing hospitals' processes mid-round for real is `make federation-faults`, PoC mode, ~5 min.)"""
    from psf.fed import he
    from psf.fed.run import FedRun, run_sim
    from psf.fed.site import SiteConfig

    run, report, sites = fed_run
    out = tmp_path / "run"
    for folder in ("hub", "consortium"):
        shutil.copytree(run.out / folder, out / folder)
    healthy = {name: sites[name] for name in ("h1", "h2")}
    for name, data in healthy.items():
        SiteConfig(name, data.resolve(), out / name, out / "consortium" / he.SECRET_NAME).write(out / "sites")
    resumed = run_sim(FedRun(out=out, centers=healthy, plan={**report["plan"], "rounds": 3}, min_clients=2,
                             task_timeout=120, resume=True))
    hub = resumed["hub"]
    assert (hub["status"], hub["resumed_after_round"], hub["attempt"]) == ("finished", 2, 2)
    assert [(r["round"], r["attempt"], r["sites"]) for r in hub["rounds"]] == [(1, 1, ["h1", "h2"]), (2, 1, ["h1", "h2"]),
                                                                               (3, 2, ["h1", "h2"])]
    assert hub["dropped"]["h3"]["attempt"] == 1
    for name in healthy:
        entry = resumed["centers"][name]
        assert [t["task"] for t in entry["traffic"]] == ["psf_ae_round", "psf_encode", "psf_finish"]
        assert entry["traffic"][0]["received_bytes"] > 0  # round 3 starts from the hub's saved sum, not from scratch
        assert 0.0 < entry["metrics"]["test"]["mean_dice"] <= 1.0
    assert not list(out.rglob("*.partial*")), "half-written files left behind"
    from psf.errors import UsageError

    with pytest.raises(UsageError, match="--resume"):  # other model sizes than the saved rounds': refused up front
        run_sim(FedRun(out=out, centers=healthy, plan={**report["plan"], "rounds": 3,
                                                       "model": {**report["plan"]["model"], "client_width": 16}},
                       min_clients=2, resume=True))
