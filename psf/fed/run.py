"""Run psf's federation on one machine: NVFlare's simulator (`sim`) or PoC processes (`poc`).

Both lay out a run folder the same way, so who holds what is visible on disk:
  hub/          the hub's public HE context (no secret key)
  consortium/   the hospitals' secret HE context (never given to the hub)
  sites/        one settings file per hospital (data, output, secret paths: read only by that hospital)
  <site>/       each hospital's model.pt and result.json
  nvflare/      NVFlare's workspace (sim) or PoC workspace; the hub's run folder holds hub.json,
                map.pt and shards/
  report.json   per hospital: Dice, bytes sent and received per task; the hub's rounds and drop-outs
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psf.errors import PsfError, UsageError
from psf.fed import he
from psf.fed.job import ALLOW_PREFIX, build_job, nvflare_version
from psf.fed.site import SITES_ENV, SiteConfig


@dataclass(frozen=True)
class FedRun:
    out: Path
    centers: dict[str, Path]  # site name -> data folder
    plan: dict
    min_clients: int
    task_timeout: int = 0
    key: Path | None = None
    record_hub_inbox: Path | None = None
    resume: bool = False  # reuse the run folder's consortium keys and the hub's saved rounds (hub/state)

    def check(self) -> None:
        if len(self.centers) < 2:
            raise UsageError("give two or more hospitals (NAME=DIR)")
        if not 1 <= self.min_clients <= len(self.centers):
            raise UsageError(f"--min-clients {self.min_clients}: must be between 1 and {len(self.centers)}")
        for name, data in self.centers.items():
            if not (Path(data) / "train").is_dir():
                raise UsageError(f"{name}={data}: not a data set folder (expected {data}/train/images, labels)")


def prepare(run: FedRun) -> Path:
    """Consortium keys, per-site settings; returns the sites folder (what $PSF_FED_SITES points at)."""
    run.check()
    out = run.out.resolve()
    (out / "hub").mkdir(parents=True, exist_ok=True)
    if run.resume:
        if not (out / "sites").is_dir():
            raise UsageError(f"--resume: {out} holds no earlier run (no sites/ folder)")
        check_resumable(out / "hub" / "state", run.plan)
        shutil.rmtree(out / "nvflare", ignore_errors=True)  # NVFlare's own workspace starts fresh; hub/state stays
        if (out / "report.json").is_file():  # the stopped attempt's report stays beside the new one
            os.replace(out / "report.json", out / "report.previous.json")
        return out / "sites"
    if run.plan.get("aggregator", "he") == "he":
        secret, public = he.new_contexts(out / "consortium")
        os.replace(public, out / "hub" / he.PUBLIC_NAME)
    else:
        from psf.fed import sealed

        secret = sealed.new_key(out / "consortium")
    for name, data in run.centers.items():
        SiteConfig(name, Path(data).resolve(), out / name, secret, run.key.resolve() if run.key else None,
                   aggregation_key=None if run.plan.get("aggregator", "he") == "he" else secret).write(out / "sites")
    return out / "sites"


def check_resumable(state: Path, plan: dict) -> None:
    """--resume with options the hub's saved rounds were not made with fails here, in one line, instead of
    inside the hub's job (the saved sums are of one model's weights, under one aggregator)."""
    meta_file = state / "state.json"
    if not meta_file.is_file():
        return
    meta = json.loads(meta_file.read_text())
    for name, flag in (("model", "the model size flags (--width, --image-size) or the data's labels/channels"),
                       ("aggregator", "--aggregator")):
        if name in meta and meta[name] != json.loads(json.dumps(plan.get(name))):
            raise UsageError(f"--resume: {state} was made with other {flag}; give the options of the stopped run")
    if int(meta.get("rounds_done", 0)) > int(plan["rounds"]):
        raise UsageError(f"--resume --rounds {plan['rounds']}: the hub already finished {meta['rounds_done']} rounds")


def allow_psf(resources_dir: Path) -> None:
    """Add psf's prefix to a site's component allow-list (NVFlare refuses unlisted classes)."""
    from nvflare.app_common.default_component_policy import DEFAULT_CLASS_ALLOW_LIST

    from psf.io.atomic import write_text_atomic

    for name in ("resources.json", "resources.json.default"):
        path = resources_dir / name
        if path.is_file() or name == "resources.json":
            data = json.loads(path.read_text()) if path.is_file() else {"format_version": 2}
            allowed = list(data.get("class_allow_list", DEFAULT_CLASS_ALLOW_LIST))
            if ALLOW_PREFIX not in allowed:
                data["class_allow_list"] = allowed + [ALLOW_PREFIX]
                write_text_atomic(path, json.dumps(data, indent=2) + "\n")


@contextmanager
def _stdout_to_stderr():
    """NVFlare logs and prints to stdout (also from its worker processes); psf keeps stdout for its summary."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _fitted(run: FedRun) -> FedRun:
    from dataclasses import replace

    from psf.fed.plan import fit_plan

    run.check()
    return replace(run, plan=fit_plan(run.plan, next(iter(run.centers.values()))))


def run_sim(run: FedRun) -> dict:
    """All participants in NVFlare's simulator (one process per hospital, the hub in this one)."""
    run = _fitted(run)
    sites = prepare(run)
    workspace = run.out.resolve() / "nvflare"
    allow_psf(workspace / "local")
    job = build_job(run.plan, run.out.resolve() / "hub" / he.PUBLIC_NAME, run.min_clients, run.task_timeout,
                    run.out.resolve() / "hub" / "state", run.record_hub_inbox)  # state: outside NVFlare's workspace
    started = time.perf_counter()
    os.environ[SITES_ENV] = str(sites)
    with _stdout_to_stderr():
        status = job.simulator_run(str(workspace), clients=list(run.centers), threads=len(run.centers))
    hub_json = sorted(workspace.rglob("hub.json"))
    if status not in (None, 0) and not hub_json:
        raise PsfError(f"NVFlare simulator failed (status {status}); logs: {workspace}/server/log.txt and {workspace}/<site>/log.txt")
    hub_dir = _hub_run_dir(workspace)
    return _finished(collect(run, hub_dir, "sim", time.perf_counter() - started), run)


def _hub_run_dir(workspace: Path) -> Path:
    found = sorted(workspace.rglob("hub.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise PsfError(f"{workspace}: the hub wrote no hub.json; the run did not finish (see the logs there)")
    return found[-1].parent


def collect(run: FedRun, hub_dir: Path, mode: str, seconds: float, job: dict | None = None) -> dict:
    """report.json: per hospital its own result (Dice, traffic) and the hub's view (rounds, drops, status)."""
    from psf.io.atomic import write_text_atomic

    hub = json.loads((hub_dir / "hub.json").read_text())
    centers = {}
    for name in run.centers:
        result = run.out / name / "result.json"
        if result.is_file() and hub.get("status", "finished") == "finished":
            centers[name] = json.loads(result.read_text())
        else:
            centers[name] = {"dropped": hub["dropped"].get(name, "no result")}
    report = {"mode": mode, "nvflare": nvflare_version(), "seconds": round(seconds, 1), "plan": run.plan,
              "min_clients": run.min_clients, "hub": hub, "hub_run_dir": str(hub_dir), "centers": centers}
    if job:
        report["job"] = job
    write_text_atomic(run.out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def run_poc(run: FedRun, timeout: float = 1800.0) -> dict:
    """The hub and every hospital as separate NVFlare processes on this machine, talking over
    NVFlare's network stack with provisioned (mutual-TLS) certificates; an admin session submits the
    job and waits for it. The PoC workspace is run.out/nvflare (nothing outside the run folder)."""
    run = _fitted(run)
    sites = prepare(run)
    workspace = run.out.resolve() / "nvflare"
    os.environ["NVFLARE_POC_WORKSPACE"] = str(workspace)
    os.environ[SITES_ENV] = str(sites)  # inherited by the hospital processes started below
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    from nvflare.recipe.poc_env import PocEnv

    env = PocEnv(num_clients=len(run.centers), clients=list(run.centers))
    job = build_job(run.plan, run.out.resolve() / "hub" / he.PUBLIC_NAME, run.min_clients, run.task_timeout,
                    run.out.resolve() / "hub" / "state", run.record_hub_inbox)  # state: outside NVFlare's workspace
    started = time.perf_counter()
    with _stdout_to_stderr():
        try:
            job_id = _deploy_when_all_connected(env, job, list(run.centers))
            result = env.get_job_result(job_id, timeout=timeout)
            status = env.get_job_status(job_id)
        finally:
            env.stop(clean_up=False)
    seconds = time.perf_counter() - started
    if result is None:
        raise PsfError(f"PoC job {job_id} did not finish within {timeout:.0f} s (status {status}); logs under {workspace}")
    hub_dir = _hub_run_dir(workspace)
    return _finished(collect(run, hub_dir, "poc", seconds, job={"id": job_id, "status": status}), run)


def _deploy_when_all_connected(env, job, sites: list[str], wait: float = 300.0) -> str:
    """PocEnv.deploy (provision, start the processes, submit), but the job is submitted only once every
    hospital has connected: NVFlare starts a job as soon as min_clients sites are connected, and a hospital
    still starting would then be left out of the whole run."""
    from nvflare.fuel.flare_api.flare_api import new_secure_session
    from nvflare.tool.poc.poc_commands import _start_poc, prepare_poc_provision

    if env._check_poc_running():
        env.stop(clean_up=True)
    prepare_poc_provision(clients=sites, number_of_clients=len(sites), workspace=env.poc_workspace, docker_image=None,
                          use_he=False, project_conf_path="", examples_dir=None)
    _start_poc(poc_workspace=env.poc_workspace, gpu_ids=[], excluded=[env.username], services_list=[])
    deadline = time.monotonic() + wait
    connected: set[str] = set()
    while True:
        try:
            session = new_secure_session(env.username, env._get_admin_startup_kit_path(), timeout=10.0)
            try:
                while not set(sites) <= connected and time.monotonic() < deadline:
                    connected = {c.name for c in session.get_system_info().client_info}
                    if not set(sites) <= connected:
                        time.sleep(1.0)
            finally:
                session.close()
            break
        except Exception:  # the hub's admin port is not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
    if not set(sites) <= connected:
        raise PsfError(f"PoC: hospitals {sorted(set(sites) - connected)} did not connect within {wait:.0f} s; "
                       f"logs under {env.poc_workspace}")
    return env._get_session_manager().submit_job(job)


def _finished(report: dict, run: FedRun) -> dict:
    """The report of a run the hub finished; a stopped run (too few hospitals) raises with its reason, after
    report.json is written, and says how to continue."""
    hub = report["hub"]
    if hub.get("status", "finished") == "finished":
        return report
    stopped = hub.get("stopped", {}).get("reason", "the hub did not finish (its log says why)")
    from psf.fed.report import where_dropped

    dropped = "; ".join(f"{s} at {where_dropped(d)}" for s, d in hub.get("dropped", {}).items()) or "none"
    raise PsfError(f"the federation stopped: {stopped} (dropped: {dropped}); the hub finished "
                   f"{len(hub.get('rounds', []))} round(s) of {run.plan['rounds']}; {run.out / 'report.json'} says more. "
                   f"Start the missing hospitals and rerun the same command with --resume to continue")


def parse_centers(specs: list[str]) -> dict[str, Path]:
    """NAME=DIR pairs (as psf-train --center takes them) -> {name: folder}."""
    centers: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise UsageError(f"{spec!r}: expected NAME=DIR, e.g. center_a=data/center_a")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise UsageError(f"{spec!r}: a site name is letters, digits, '-' and '_' (it becomes the NVFlare client name)")
        if name in centers:
            raise UsageError(f"{spec!r}: site {name} given twice")
        if not Path(folder).is_dir():
            raise UsageError(f"{spec!r}: {folder} is not a folder")
        centers[name] = Path(folder)
    return centers
