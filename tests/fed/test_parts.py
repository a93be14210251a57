"""The federation's parts without NVFlare running: encryption, shared weights, shards, budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tenseal", reason="needs the federated extra: pip install 'privacy-sf[federated]'")


def test_the_hub_adds_what_only_hospitals_can_read(tmp_path):
    from psf.errors import PsfError
    from psf.fed import he

    secret_path, public_path = he.new_contexts(tmp_path)
    secret, public = he.load_context(secret_path, need_secret=True), he.load_context(public_path, need_secret=False)
    with pytest.raises(PsfError, match="public context only"):
        he.load_context(secret_path, need_secret=False)
    a, b = np.linspace(-1, 1, 5000), np.linspace(2, 3, 5000)
    total = he.add(public, [he.encrypt(secret, 3 * a), he.encrypt(secret, 1 * b)])
    assert np.abs(he.decrypt(secret, total) - (3 * a + b)).max() < 1e-5
    import tenseal as ts

    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(public, total.tobytes()).decrypt()


def test_shared_weights_round_trip_in_place():
    from psf.fed.weights import flatten, load_flat
    from psf.models import build_networks
    from psf.models.config import ModelConfig

    nets = build_networks(ModelConfig(client_width=8, map_width=8))
    param = next(nets.image_encoder.parameters())
    flat = flatten(nets)
    load_flat(nets, flat * 2)
    assert np.allclose(flatten(nets), flat * 2) and next(nets.image_encoder.parameters()) is param
    with pytest.raises(ValueError, match="values"):
        load_flat(nets, flat[:-1])


def test_shards_are_named_offset_and_removable(tmp_path):
    from psf.fed.shards import load_shards, remove_shard, save_shard

    for site, n in (("a", 3), ("b", 2)):
        save_shard(tmp_path, site, {"z_image": np.ones((n, 4, 2, 2), np.float32), "z_mask": np.zeros((n, 3, 2, 2), np.float32),
                                    "groups": np.arange(n)})
    pairs = load_shards(tmp_path, ["a", "b"])
    assert len(pairs) == 5 and pairs.groups.tolist() == [0, 1, 2, 3, 4]
    assert remove_shard(tmp_path, "a") and not (tmp_path / "a.npz").exists()


def test_each_hospital_gets_the_budget_it_would_have_alone(tmp_path):
    from psf.fed.plan import make_plan, round_stage, train_options
    from psf.train.run import TrainOptions, stage_options

    opts = TrainOptions(data=tmp_path, out=tmp_path / "m.pt", minutes=10, stage_steps={"image_ae": 400, "mask_ae": 200})
    again = train_options(make_plan(opts, 4))
    assert again.stage_steps == opts.stage_steps and again.model == opts.model
    for stage in ("image_ae", "mask_ae"):
        rounds = [round_stage(opts, stage, 4, r) for r in range(4)]
        whole = stage_options(opts, stage).budget
        assert sum(o.budget.seconds for o in rounds) == pytest.approx(whole.seconds)
        assert sum(o.budget.steps for o in rounds) == whole.steps
        assert [o.schedule for o in rounds] == [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]


def test_site_settings_stay_outside_the_job(tmp_path, monkeypatch):
    from psf.errors import PsfError
    from psf.fed.site import SITES_ENV, SiteConfig

    SiteConfig("h1", Path("/data/h1"), Path("/out/h1"), Path("/keys/he-secret.tenseal")).write(tmp_path)
    monkeypatch.setenv(SITES_ENV, str(tmp_path))
    assert SiteConfig.load("h1").data == Path("/data/h1")
    with pytest.raises(PsfError, match="no settings for site h2"):
        SiteConfig.load("h2")


def test_the_explicit_fallback_seals_updates_for_the_hospitals_only(tmp_path):
    from psf.errors import PsfError
    from psf.fed import sealed

    key = sealed.load_key(sealed.new_key(tmp_path))
    vector = np.linspace(-2, 2, 1000)
    blob = sealed.seal(key, vector)
    assert vector.tobytes()[:64] not in blob.tobytes() and np.array_equal(sealed.open_sealed(key, blob), vector)
    with pytest.raises(PsfError, match="does not open"):
        sealed.open_sealed(bytes(32), blob)


def test_an_unknown_aggregator_is_refused():
    from psf.errors import UsageError
    from psf.fed.plan import make_plan
    from psf.train.run import TrainOptions

    with pytest.raises(UsageError, match="--aggregator 'plain'"):
        make_plan(TrainOptions(data=Path("."), out=Path("m.pt")), 2, aggregator="plain")


def _fed(*args: str):
    from typer.testing import CliRunner

    from psf.cli.fed import app

    return CliRunner().invoke(app, list(args))


def test_the_production_job_carries_the_data_layout_and_the_dp_plan(tmp_path):
    """`psf fed job` for a data set that is not the demo's: its labels and channels, and with --membership-defense
    dp a mapping net the hub can train with DP-SGD (GroupNorm: Opacus refuses BatchNorm)."""
    import json

    pytest.importorskip("nvflare", reason="needs the federated extra")
    result = _fed("job", str(tmp_path / "job"), "--he-public", "/hub/he-public.tenseal", "--labels", "background,tumour,edema",
                  "--channels", "2", "--membership-defense", "dp", "--epsilon", "8", "--state-dir", "/hub/state", "--steps", "10")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "job" / "psf_federation" / "app" / "config" / "config_fed_server.json").read_text())
    args = config["workflows"][0]["args"]
    plan = args["plan"]
    assert plan["labels"] == ["background", "tumour", "edema"] and args["state_dir"] == "/hub/state"
    assert (plan["model"]["in_channels"], plan["model"]["num_classes"], plan["model"]["map_norm"]) == (2, 3, "group")
    assert (plan["membership_defense"], plan["epsilon"]) == ("dp", 8.0)
    pytest.importorskip("opacus", reason="needs the dp extra")
    from psf.models import build_networks
    from psf.models.config import ModelConfig
    from psf.train.dp import check_dp_ready

    check_dp_ready(build_networks(ModelConfig.from_dict(plan["model"])).mapping)
    for bad, message in ((["--labels", "tumour"], "two or more"), (["--epsilon", "8"], "add --membership-defense dp"),
                         (["--like", str(tmp_path), "--labels", "a,b"], "not both")):
        result = _fed("job", str(tmp_path / "bad"), "--he-public", "/hub/he-public.tenseal", *bad)
        assert result.exit_code == 1 and message in result.output, result.output
    result = _fed("job", str(tmp_path / "bad"), "--he-public", "he-public.tenseal")
    assert result.exit_code == 1 and "absolute path" in result.output
