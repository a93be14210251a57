"""The hub's side of the federation (the NVFlare server's workflow): add, store, train, return.

The hub holds the public CKKS context only: it adds the hospitals' encrypted updates without being
able to read them, stores each hospital's encoded pairs in a named shard, trains the mapping net
with psf-train's server stage on those pairs only, and sends the net to every hospital. It writes
hub.json in its run folder (who took part in which round, who dropped, bytes received), map.pt
(the mapping net's state dict: what `psf-serve` will serve) and shards/<site>.npz.

A round needs `min_clients` answers within `task_timeout` seconds; a hospital that drops (fails, is
killed, does not answer in time) is named in hub.json with the task, round and time, and left out of
the later tasks. hub.json is rewritten after every task ("status": running, then finished, or stopped
with the reason), so a run that stops still says who dropped and where. After each round the
encrypted sum is saved (state/: carry.npz holds the round count with the ciphertexts, in one atomic
write), so a run started again with the same state folder resumes from the last finished round.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.workflows.model_controller import ModelController

from psf.fed.hospital import TASK_ENCODE, TASK_FINISH, TASK_ROUND

ROUNDS_DONE = "psf_rounds_done"  # carry.npz entry: rounds finished when the carry was saved


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
        self._hub_json = run_dir / "hub.json"
        report = self._report = {"status": "running", "rounds": [], "dropped": {}, "started": time.time()}
        try:  # carry: what the hospitals get next ({"sum": CKKS sum} or {"sealed.<site>": ...}); earlier attempts' log
            carry, first, earlier = self._resume(state, self.plan)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            report.update(status="stopped", stopped={"task": None, "round": None, "reason": str(exc)})
            self._write_report()
            self.panic(str(exc))
            raise
        # attempt: 1 for a fresh run, +1 for each --resume; drops and rounds say in which attempt they happened
        report.update(attempt=earlier.get("attempt", 0) + 1, rounds=earlier.get("rounds", []),
                      dropped=earlier.get("dropped", {}))
        self._state, self._rounds_done = state, first
        if first:
            report["resumed_after_round"] = first
            self.info(f"resuming after round {first}/{rounds} (hub state {state})")
        self._write_report()
        sites = None
        for r in range(first, rounds):
            results = self._ask(TASK_ROUND, carry, {"round": r}, sites)
            sites = sorted(m.meta["client_name"] for m in results)
            if use_he:
                carry = {"sum": he.add(public, [np.asarray(m.params["update"]) for m in results])}
            else:  # the explicit fallback: relay the sealed updates; each hospital opens and averages them
                carry = {f"sealed.{m.meta['client_name']}": np.asarray(m.params["update"]) for m in results}
            report["rounds"].append({"round": r + 1, "attempt": report["attempt"], "sites": sites,
                                     "aggregator": "he" if use_he else "hospitals",
                                     "received_bytes": {m.meta["client_name"]: _nbytes(m.params) for m in results},
                                     "sent_bytes_each_next": _nbytes(carry)})
            self._save_state(state, r + 1, carry)
            self._write_report()
            self.info(f"round {r + 1}/{rounds}: {'added' if use_he else 'relayed'} {len(results)} encrypted updates")
        results = self._ask(TASK_ENCODE, carry, {}, sites)
        sites = sorted(m.meta["client_name"] for m in results)
        mapping, log = self._train_mapping(run_dir / "shards", results, sites)
        report["encode"] = {m.meta["client_name"]: _nbytes(m.params) for m in results}
        report["mapping"] = {"sites": sites, "log": log}
        self._write_report()
        hub_info = {"sites": sites, "dropped": sorted(set(report["dropped"]) - set(sites)), "mapping": log}
        params = {f"mapping.{k}": v.detach().cpu().numpy() for k, v in mapping.state_dict().items()}
        self._ask(TASK_FINISH, params, {"hub": hub_info}, sites)
        report["status"] = "finished"
        self._write_report()

    def _write_report(self) -> None:
        report = dict(self._report)
        report["seconds"] = round(time.time() - report.pop("started"), 1)
        _write_json(self._hub_json, report)

    def _ask(self, task: str, params: dict, meta: dict, sites) -> list[FLModel]:
        """Send one task to the sites still in the run and wait for all of them (or the timeout): a site
        that fails or does not answer in time is dropped and named with the task, round and time; fewer
        than min_clients good answers end the run (hub.json says why). (Ending the task at min_clients
        answers would abort the slower healthy sites.)"""
        report = self._report
        targets = sites or None
        sent = time.time()
        results = self.send_model_and_wait(task_name=task, data=FLModel(params=params, meta={"plan": self.plan, **meta}),
                                           targets=targets, min_responses=None, timeout=self.task_timeout)
        answered = {m.meta["client_name"] for m in results}
        expected = set(targets) if targets else {c.name for c in self.engine.get_clients()}
        waited = time.time() - sent
        rnd = meta["round"] + 1 if "round" in meta else None
        where = f"{task} round {rnd}" if rnd else task
        for site in sorted(expected - answered):
            if self.get_client_disconnect_time(site):
                why = "disconnected (NVFlare lost the site)"
            elif self.task_timeout and waited >= self.task_timeout - 1:
                why = f"no answer within --task-timeout {self.task_timeout} s"
            else:
                why = "the task failed at the site (details in its own error.log)"
            report["dropped"][site] = {"task": task, "round": rnd, "attempt": report["attempt"],
                                       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                       "after_seconds": round(waited, 1), "why": why}
            self.warning(f"site {site} dropped at {where}: {why}; continuing with {len(answered)}")
        if expected - answered:
            self._save_history(self._state)
        if len(results) < self.min_clients:
            report["status"] = "stopped"
            report["stopped"] = {"task": task, "round": rnd,
                                 "reason": f"{len(results)} hospital(s) answered {where}, fewer than "
                                           f"min_clients={self.min_clients}"}
            self._write_report()
            self.panic(f"{where}: {len(results)} hospitals answered, fewer than min_clients={self.min_clients}")
            raise RuntimeError(f"{where}: too few hospitals answered")
        self._write_report()
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
    def _resume(state: Path, plan: dict) -> tuple[dict, int, dict]:
        """(carry, rounds done, the earlier attempts' rounds and drops) from the state folder, or a fresh start.
        The round count is read from carry.npz itself (written in one atomic step with the ciphertexts)."""
        meta_file = state / "state.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        for name in ("model", "aggregator"):
            if name in meta and meta[name] != json.loads(json.dumps(plan.get(name))):
                raise RuntimeError(f"{state}: the saved rounds were made with another {name} "
                                   f"({meta[name]} vs {plan.get(name)}); resume with the same options or start anew")
        carry, done = {}, 0
        if (state / "carry.npz").is_file():
            with np.load(state / "carry.npz") as saved:
                carry = {k: saved[k] for k in saved.files if k != ROUNDS_DONE}
                done = int(saved[ROUNDS_DONE]) if ROUNDS_DONE in saved.files else int(meta["rounds_done"])
        if done > int(plan["rounds"]):
            raise RuntimeError(f"{state}: {done} rounds done, more than the plan's {plan['rounds']} (--rounds)")
        earlier = {"rounds": [r for r in meta.get("rounds", []) if r["round"] <= done],
                   "dropped": meta.get("dropped", {}), "attempt": int(meta.get("attempt", 0))}
        return carry, done, earlier

    def _save_state(self, state: Path, rounds_done: int, carry: dict) -> None:
        """After each round: what the hospitals get next (ciphertexts only) with the round count, in one
        atomic write; then state.json."""
        from psf.io.atomic import atomic_path

        with atomic_path(state / "carry.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **carry, **{ROUNDS_DONE: np.int64(rounds_done)})
        self._rounds_done = rounds_done
        self._save_history(state)

    def _save_history(self, state: Path) -> None:
        """state.json: the plan's model and aggregator (a resume must match them), the rounds and drops so far
        (a resumed run's hub.json keeps them). Also written when a site drops, so a stopped run's drops survive."""
        report = self._report
        _write_json(state / "state.json", {"rounds_done": self._rounds_done, "model": self.plan.get("model"),
                                           "aggregator": self.plan.get("aggregator"), "attempt": report["attempt"],
                                           "rounds": report["rounds"], "dropped": report["dropped"]})


def _nbytes(params: dict | None) -> int:
    return int(sum(np.asarray(v).nbytes for v in (params or {}).values()))


def _write_json(path: Path, data: dict) -> None:
    from psf.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
