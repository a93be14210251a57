"""The hub's side of the federation (the NVFlare server's workflow): add, store, train, return.

The hub holds the public CKKS context only: it adds the hospitals' encrypted updates without being
able to read them, stores each hospital's encoded pairs in a named shard, trains the mapping net
with psf-train's server stage on those pairs only, and sends the net to every hospital. It writes
hub.json in its run folder (who took part in which round, who dropped, bytes received), map.pt
(the mapping net's state dict: what `psf-serve` will serve) and shards/<site>.npz.

A round needs `min_clients` answers within `task_timeout` seconds; a hospital that drops is named in
hub.json and left out of the later tasks. After each round the encrypted sum is saved (state/), so
a run started again with the same state folder resumes from the last finished round.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.workflows.model_controller import ModelController

from psf.fed.hospital import TASK_ENCODE, TASK_FINISH, TASK_ROUND


class HubController(ModelController):
    def __init__(self, plan: dict, he_public: str, min_clients: int = 2, task_timeout: int = 0,
                 state_dir: str = ""):
        # Client errors never stop the run by themselves: _ask counts the good answers against min_clients.
        super().__init__(persistor_id="", ignore_result_error=True)
        self.plan, self.he_public, self.min_clients = plan, he_public, int(min_clients)
        self.task_timeout, self.state_dir = int(task_timeout), state_dir

    # -- the workflow ---------------------------------------------------------------------------
    def run(self) -> None:
        from psf.fed import he

        run_dir = Path(self.get_run_dir())
        state = Path(self.state_dir) if self.state_dir else run_dir / "state"
        use_he = self.plan.get("aggregator", "he") == "he"
        public = he.load_context(Path(self.he_public), need_secret=False) if use_he else None
        rounds = int(self.plan["rounds"])
        report = {"rounds": [], "dropped": {}, "started": time.time()}
        carry, first = self._resume(state)  # what the hospitals get next: {"sum": CKKS sum} or {"sealed.<site>": ...}
        if first:
            report["resumed_after_round"] = first
        sites = None
        for r in range(first, rounds):
            results = self._ask(TASK_ROUND, carry, {"round": r}, sites, report)
            sites = sorted(m.meta["client_name"] for m in results)
            if use_he:
                carry = {"sum": he.add(public, [np.asarray(m.params["update"]) for m in results])}
            else:  # the explicit fallback: relay the sealed updates; each hospital opens and averages them
                carry = {f"sealed.{m.meta['client_name']}": np.asarray(m.params["update"]) for m in results}
            self._save_state(state, r + 1, carry)
            report["rounds"].append({"round": r + 1, "sites": sites, "aggregator": "he" if use_he else "hospitals",
                                     "received_bytes": {m.meta["client_name"]: _nbytes(m.params) for m in results},
                                     "sent_bytes_each_next": _nbytes(carry)})
            self.info(f"round {r + 1}/{rounds}: {'added' if use_he else 'relayed'} {len(results)} encrypted updates")
        results = self._ask(TASK_ENCODE, carry, {}, sites, report)
        sites = sorted(m.meta["client_name"] for m in results)
        mapping, log = self._train_mapping(run_dir / "shards", results, sites)
        report["encode"] = {m.meta["client_name"]: _nbytes(m.params) for m in results}
        report["mapping"] = {"sites": sites, "log": log}
        hub_info = {"sites": sites, "dropped": sorted(report["dropped"]), "mapping": log}
        params = {f"mapping.{k}": v.detach().cpu().numpy() for k, v in mapping.state_dict().items()}
        self._ask(TASK_FINISH, params, {"hub": hub_info}, sites, report)
        report["seconds"] = round(time.time() - report.pop("started"), 1)
        _write_json(run_dir / "hub.json", report)

    def _ask(self, task: str, params: dict, meta: dict, sites, report: dict) -> list[FLModel]:
        """Send one task to the sites still in the run and wait for all of them (or the timeout): a site
        that fails or does not answer in time is dropped and named; fewer than min_clients good answers
        end the run. (Ending the task at min_clients answers would abort the slower healthy sites.)"""
        targets = sites or None
        results = self.send_model_and_wait(task_name=task, data=FLModel(params=params, meta={"plan": self.plan, **meta}),
                                           targets=targets, min_responses=None, timeout=self.task_timeout)
        answered = {m.meta["client_name"] for m in results}
        expected = set(targets) if targets else {c.name for c in self.engine.get_clients()}
        for site in sorted(expected - answered):
            report["dropped"].setdefault(site, f"{task} {meta.get('round', '')}".strip())
            self.warning(f"site {site} did not answer {task}; continuing with {len(answered)}")
        if len(results) < self.min_clients:
            self.panic(f"{task}: {len(results)} hospitals answered, fewer than min_clients={self.min_clients}")
            raise RuntimeError(f"{task}: too few hospitals answered")
        return results

    def _train_mapping(self, shard_dir: Path, results: list[FLModel], sites: list[str]):
        """Store each site's pairs as its shard, then psf-train's server stage on all shards."""
        import torch

        from psf.fed.plan import train_options
        from psf.fed.shards import load_shards, save_shard
        from psf.models import build_networks

        for m in results:
            save_shard(shard_dir, m.meta["client_name"], {k: np.asarray(v) for k, v in m.params.items()})
        opts = train_options(self.plan)
        torch.manual_seed(opts.seed)
        gen = torch.Generator().manual_seed(opts.seed)
        pairs = load_shards(shard_dir, sites)
        self.info(f"mapping net: {len(pairs)} encoded pairs from {len(sites)} hospitals")
        from psf.train.run import server_stage

        mapping, log = server_stage(opts, build_networks(opts.model).mapping, pairs, gen)
        mapping.eval()
        from psf.io.atomic import atomic_path

        with atomic_path(Path(self.get_run_dir()) / "map.pt") as tmp:
            torch.save({"config": opts.model.to_dict(), "mapping": mapping.state_dict(), "sites": sites}, tmp)
        return mapping, log

    # -- resume -----------------------------------------------------------------------------------
    @staticmethod
    def _resume(state: Path) -> tuple[dict, int]:
        meta = state / "state.json"
        if not meta.is_file():
            return {}, 0
        with np.load(state / "carry.npz") as saved:
            return {k: saved[k] for k in saved.files}, int(json.loads(meta.read_text())["rounds_done"])

    @staticmethod
    def _save_state(state: Path, rounds_done: int, carry: dict) -> None:
        """After each round: what the hospitals get next (ciphertexts only), then the round count."""
        from psf.io.atomic import atomic_path

        with atomic_path(state / "carry.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **carry)
        _write_json(state / "state.json", {"rounds_done": rounds_done})


def _nbytes(params: dict | None) -> int:
    return int(sum(np.asarray(v).nbytes for v in (params or {}).values()))


def _write_json(path: Path, data: dict) -> None:
    from psf.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
