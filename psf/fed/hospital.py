"""The hospital's side of the federation (an NVFlare client): local training, encryption, encoding.

A hospital answers three tasks from the hub, in order:
  psf_ae_round  decrypt the hub's encrypted sum (from round 2 on), train its image and mask
                autoencoders for one round's share of the budget, send back CKKS(n * weights, n)
  psf_encode    decrypt the final sum, encode its own (image, mask) views, keyed when the consortium
                uses a latent key, and send only the latents (one named shard)
  psf_finish    receive the hub's mapping net, evaluate on its own test split and write its own
                model.pt (its autoencoders + the hub's map), ready for psf-export
Everything else stays here: images, masks, file names, decoders, secret keys, metrics. What it sent
and received (bytes per task) is written to result.json beside model.pt.

Run by NVFlare's Client API (`hospital_main.py`, the job's client script) in the client process.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from psf.fed import he, sealed
from psf.fed.plan import round_stage, train_options
from psf.fed.site import SiteConfig
from psf.fed.weights import flatten, load_flat

TASK_ROUND, TASK_ENCODE, TASK_FINISH = "psf_ae_round", "psf_encode", "psf_finish"


class Hospital:
    """One site's state across the tasks of a run (data, networks, optimizers, keys)."""

    def __init__(self, site: SiteConfig, plan: dict):
        from psf.models import build_networks
        from psf.progress import stderr
        from psf.train.run import load_key, seed_everything
        from psf.train.stages import client_optimizer

        self.site, self.plan, self.rounds = site, plan, int(plan["rounds"])
        self.started = time.perf_counter()
        seed_everything(int(plan["seed"]))  # same seed everywhere: every hospital starts from the same weights
        self.gen = torch.Generator().manual_seed(int(plan["seed"]))
        self.opts, self.norm, self.splits, self.views = load_site_data(train_options(plan, site.data, site.out / "model.pt", site.key), self.gen)
        stderr.print(f"hospital {site.name}: {', '.join(f'{s} {len(d)}' for s, d in self.splits.items())} slices")
        self.nets = build_networks(self.opts.model)
        self.key = load_key(site.key, self.opts.model)
        self.aggregator = plan.get("aggregator", "he")
        if self.aggregator == "he":
            self.he = he.load_context(site.he_secret, need_secret=True)
        else:
            self.sealed_key = sealed.load_key(site.aggregation_key or site.he_secret)
        self.optimizers = (client_optimizer(self.nets.image_encoder, self.nets.image_decoder),
                           client_optimizer(self.nets.mask_encoder, self.nets.mask_decoder))
        self.log = {"rounds": [], "traffic": []}

    def _take_sum(self, params: dict) -> None:
        """Decrypt the hub's sum of CKKS(n_i * w_i, n_i) (or open and add the relayed sealed updates)
        and load sum(n_i w_i) / sum(n_i)."""
        if "sum" in params:
            total = he.decrypt(self.he, np.asarray(params["sum"]))
        else:
            relayed = [sealed.open_sealed(self.sealed_key, v) for k, v in params.items() if k.startswith(sealed.PREFIX)]
            if not relayed:
                return
            total = np.sum(relayed, axis=0)
        load_flat(self.nets, total[:-1] / total[-1])

    def ae_round(self, r: int, params: dict) -> dict:
        from psf.train.stages import train_image_autoencoder, train_mask_autoencoder

        self._take_sum(params)
        image_opt, mask_opt = self.optimizers
        log = {"round": r + 1,
               "image_ae": train_image_autoencoder(self.nets, self.views, round_stage(self.opts, "image_ae", self.rounds, r), self.gen, image_opt),
               "mask_ae": train_mask_autoencoder(self.nets, self.views, round_stage(self.opts, "mask_ae", self.rounds, r), self.gen, opt=mask_opt)}
        self.log["rounds"].append(log)
        n = float(len(self.splits["train"]))
        update = np.append(flatten(self.nets) * n, n)
        return {"update": he.encrypt(self.he, update) if self.aggregator == "he" else sealed.seal(self.sealed_key, update)}

    def encode(self, params: dict) -> dict:
        from psf.train.stages import encode_pairs

        self._take_sum(params)
        pairs = encode_pairs(self.nets, self.views, key=self.key)
        return {"z_image": pairs.z_image.numpy(), "z_mask": pairs.z_mask.numpy(),
                "groups": pairs.groups.numpy().astype(np.int64)}

    def finish(self, params: dict, meta: dict) -> dict:
        """Load the hub's mapping net, evaluate here, write model.pt and result.json (site-local)."""
        from psf.train.checkpoint import save_checkpoint
        from psf.train.evaluation import evaluate

        state = {k.removeprefix("mapping."): torch.from_numpy(np.asarray(v)) for k, v in params.items() if k.startswith("mapping.")}
        self.nets.mapping.load_state_dict(state)
        self.nets.eval()
        metrics = {s: evaluate(self.nets, self.splits[s], self.opts.labels, self.key) for s in ("val", "test")}
        hub = dict(meta.get("hub", {}))
        training = {"federated": {"site": self.site.name, "rounds": self.rounds, "hub": {k: v for k, v in hub.items() if k != "mapping"}},
                    "plan": {k: v for k, v in self.plan.items() if k != "model"},
                    "stages": {"rounds": self.log["rounds"], "mapping": hub.get("mapping", {})},
                    "seconds": round(time.perf_counter() - self.started, 1),
                    "slices": {s: len(d) for s, d in self.splits.items()}}
        out = self.opts.out
        save_checkpoint(out, self.nets, list(self.opts.labels), self.norm, metrics, training,
                        key_id=self.key.key_id if self.key else None)
        self.result = {"site": self.site.name, "model": str(out), "metrics": metrics, "traffic": self.log["traffic"],
                       "seconds": training["seconds"]}
        return {"done": np.ones(1, dtype=np.int8)}

    def write_result(self) -> None:
        """result.json beside model.pt: Dice, and bytes sent and received per task (stays here)."""
        from psf.io.atomic import write_text_atomic

        write_text_atomic(self.opts.out.with_name("result.json"), json.dumps(self.result, indent=2) + "\n")


def load_site_data(opts, gen: torch.Generator):
    """The hospital's splits and augmented training views, read as psf-train reads a data set (its
    dataset.json's labels, channels and normalization). The model those imply must be the plan's: one
    shared autoencoder needs one label set and one channel layout across the consortium."""
    from psf.errors import PsfError
    from psf.train.data import dataset_info, fit_normalization, load_split
    from psf.train.run import _pad_values, with_dataset
    from psf.train.views import Views

    info = dataset_info(opts.data)
    fitted = with_dataset(opts, info)
    if fitted.model != opts.model or tuple(fitted.labels) != tuple(opts.labels):
        raise PsfError(f"{opts.data}: labels {list(info.labels)} and channels {list(info.channels)} differ from the "
                       f"consortium plan's (labels {list(opts.labels)}, {opts.model.in_channels} channel(s))")
    norm = fit_normalization(opts.data, info)
    splits = {s: load_split(opts.data, s, opts.model.image_size, norm, info=info) for s in ("train", "val", "test")}
    train = splits["train"]
    views = Views(train.images, train.labels, opts.model.num_classes, opts.views, gen,
                  background=_pad_values(norm, opts), bounded=info.modality != "CT")
    return opts, norm, splits, views


def _nbytes(params: dict | None) -> int:
    return int(sum(np.asarray(v).nbytes for v in (params or {}).values()))


def main() -> None:
    """The client script: run the hub's tasks until it ends the run. A failure is written in full to the
    hospital's own error.log; what NVFlare reports onwards names the site and task only (an error
    message can hold a file name or a path, which must not reach the hub)."""
    import os
    import traceback

    import nvflare.client as flare

    torch.set_num_threads(max(1, int(os.environ.get("PSF_FED_THREADS", "1"))))
    flare.init()
    name = flare.get_site_name()
    try:
        site = SiteConfig.load(name)
    except Exception:
        raise RuntimeError(f"hospital {name}: no usable site settings (see $PSF_FED_SITES on that machine)") from None
    try:
        _serve(flare, site)
    except Exception:
        site.out.mkdir(parents=True, exist_ok=True)
        with open(site.out / "error.log", "a") as log:
            log.write(traceback.format_exc())
        raise RuntimeError(f"hospital {name}: a task failed; details in its own error.log") from None


def _serve(flare, site: SiteConfig) -> None:
    from nvflare.app_common.abstract.fl_model import FLModel

    hospital = None
    while flare.is_running():
        incoming = flare.receive()
        if incoming is None:
            break
        task, meta, params = flare.get_task_name(), incoming.meta or {}, incoming.params or {}
        if hospital is None:
            hospital = Hospital(site, meta["plan"])
        if task == TASK_ROUND:
            reply = hospital.ae_round(int(meta["round"]), params)
        elif task == TASK_ENCODE:
            reply = hospital.encode(params)
        elif task == TASK_FINISH:
            reply = hospital.finish(params, meta)
        else:
            raise RuntimeError(f"unknown task {task!r} from the hub")
        hospital.log["traffic"].append({"task": task, "round": meta.get("round"),
                                        "received_bytes": _nbytes(params), "sent_bytes": _nbytes(reply)})
        flare.send(FLModel(params=reply, meta={}))
        if task == TASK_FINISH:
            hospital.write_result()
            break
