"""Faults in a real federation: hospitals killed mid-round, the run stopped, then resumed (NVFlare PoC mode).

    python -m benchmarks.federation_faults [--out DIR] [--data DIR] [--rounds 4] [--task-timeout 45]
                                           [--steps image_ae=120,mask_ae=80,mapping=200]

`make federation-faults` runs it. Three demo hospitals (psf data mni152 --centers 3) and a hub, each its own
set of processes (`psf fed poc`: provisioned certificates, NVFlare's network stack on loopback):
1. attempt 1 with --min-clients 2: center_c is killed (SIGKILL of its start script, client and job
   processes) while it trains round 2; the hub drops it after --task-timeout and the others go on. Then
   center_b is killed while it trains round 3: one hospital is left, fewer than --min-clients, so the hub
   stops the run (psf fed poc exits 1 and says to use --resume).
2. attempt 2: the same command with --resume (all three hospitals started again): the hub resumes after
   its last finished round (2) and the run finishes.
Checked after each attempt: the exit status, report.json (status, who dropped at which task/round/why, the
round the hub resumed after, every hospital's Dice), the hub's saved state (carry.npz + state.json), no
hospital model or result from the stopped attempt, and no half-written file (`*.partial*`, psf's atomic
writes) anywhere in the run folder, NVFlare's workspaces included. "Mid-round" is read from the killed
hospital's own NVFlare log: it had been given round N's task and had not finished it.

Writes OUT/faults.json (commands, timings, the checks and their results) and OUT/run.json; exits 1 if a
check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SITES = ("center_a", "center_b", "center_c")
GOT = "got task assignment: name=psf_ae_round"
DONE = "task_name=psf_ae_round"  # with "finished processing task" on the same line
TRAINING = "waiting for result from in-process trainer"


def _site_dir(run: Path, site: str) -> Path | None:
    found = sorted(run.glob(f"nvflare/*/prod_*/{site}"))
    return found[0] if found else None


def _job_log(run: Path, site: str) -> Path | None:
    """The hospital's log of the running job (NVFlare writes it under <site workspace>/<job id>/log.txt)."""
    site_dir = _site_dir(run, site)
    if site_dir is None:
        return None
    logs = [p for p in site_dir.glob("*/log.txt") if len(p.parent.name) == 36]  # <job uuid>/log.txt
    return logs[0] if logs else None


def _round_progress(log: Path | None) -> tuple[int, int, int]:
    """(round tasks received, started training, finished) from the hospital's job log."""
    if log is None or not log.is_file():
        return 0, 0, 0
    text = log.read_text(errors="replace").splitlines()
    got = sum(GOT in line for line in text)
    training = sum(DONE in line and TRAINING in line for line in text)
    done = sum(DONE in line and "finished processing task" in line for line in text)
    return got, training, done


def _site_processes(site_dir: Path) -> list[tuple[int, str]]:
    """(pid, short name) of every process of one PoC site: its start script, client and job processes."""
    import psutil

    prefix = str(site_dir.resolve())
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info.get("cmdline") or []
        if any(a == prefix or a.startswith(prefix + os.sep) for a in args):
            name = next((a.rsplit(".", 1)[-1] for a in args if a.startswith("nvflare.")), Path(args[-1]).name if args else "?")
            found.append((proc.info["pid"], "sub_start.sh" if any(a.endswith("sub_start.sh") for a in args) else name))
    return found


def _kill_site(run: Path, site: str) -> dict:
    """SIGKILL the hospital: its start script first (it would restart the client), then client and job."""
    import psutil

    site_dir = _site_dir(run, site)
    procs = sorted(_site_processes(site_dir), key=lambda p: p[1] != "sub_start.sh")
    for pid, _ in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    alive = [pid for pid, _ in procs if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    return {"killed": [{"pid": pid, "process": name} for pid, name in procs], "still_alive": alive}


def _killer(run: Path, plan: list[tuple[str, int]], events: list, stop: threading.Event) -> None:
    """Kill each (site, round) while that site trains that round: it has the round's task, its trainer
    is running and it has not finished it."""
    for site, rnd in plan:
        while not stop.is_set():
            got, training, done = _round_progress(_job_log(run, site))
            if got >= rnd and training >= rnd and done < rnd:
                time.sleep(1.0)  # well inside the round's training (a few seconds with the default steps)
                got, training, done = _round_progress(_job_log(run, site))
                if done >= rnd:
                    events.append({"site": site, "round": rnd, "error": "the round finished before the kill"})
                    break
                event = {"site": site, "round": rnd, "time": time.strftime("%H:%M:%S"),
                         "log_at_kill": {"round_tasks_received": got, "training_started": training,
                                         "rounds_finished": done}}
                event.update(_kill_site(run, site))
                events.append(event)
                break
            if done >= rnd:
                events.append({"site": site, "round": rnd, "error": "missed: the round finished before the kill"})
                break
            time.sleep(0.2)


def _partial_files(root: Path) -> list[str]:
    """Half-written files of psf's atomic writes (.NAME.partial*) or folders (.NAME.partial-*)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".partial" in p.name)


def _run_attempt(cmd: list[str], run: Path, log_dir: Path, name: str, kills: list[tuple[str, int]]) -> dict:
    started = time.perf_counter()
    events: list = []
    stop = threading.Event()
    with open(log_dir / f"{name}.stdout", "w") as out, open(log_dir / f"{name}.stderr", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
        killer = threading.Thread(target=_killer, args=(run, kills, events, stop), daemon=True)
        killer.start()
        rc = proc.wait()
        stop.set()
        killer.join(timeout=5)
    stderr = (log_dir / f"{name}.stderr").read_text(errors="replace").strip().splitlines()
    psf_lines = [line for line in stderr if line.startswith(("error:", "NVFlare "))]
    return {"command": " ".join(cmd), "exit_status": rc, "seconds": round(time.perf_counter() - started, 1),
            "kills": events, "stdout": (log_dir / f"{name}.stdout").read_text().strip().splitlines(),
            "psf_stderr": psf_lines}


def _stray_processes(run: Path) -> list[str]:
    """Processes still running from the run folder (NVFlare's PoC is stopped after each attempt)."""
    import psutil

    prefix = str(run)
    stray = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info.get("cmdline") or []
        if any(prefix in a for a in args) and proc.info["pid"] != os.getpid():
            stray.append(f"{proc.info['pid']} {' '.join(args)[:120]}")
    return stray


def _check(checks: list, name: str, ok: bool, detail="") -> None:
    checks.append({"check": name, "ok": bool(ok), "detail": detail})
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + str(detail) if detail != '' else ''}", flush=True)


def _state(run: Path) -> dict:
    import numpy as np

    from psf.fed.hub import ROUNDS_DONE

    state = run / "hub" / "state"
    with np.load(state / "carry.npz") as saved:
        keys = sorted(saved.files)
        done = int(saved[ROUNDS_DONE])
    return {"carry_entries": keys, "carry_rounds_done": done,
            "state_json_rounds_done": json.loads((state / "state.json").read_text())["rounds_done"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("demo/federation-faults"))
    ap.add_argument("--data", type=Path, default=None, help="psf data mni152 --centers 3 output (made if missing)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--task-timeout", type=int, default=45)
    ap.add_argument("--steps", default="image_ae=120,mask_ae=80,mapping=200")
    args = ap.parse_args()
    import shutil

    from psf.bench.provenance import run_record
    from psf.io.atomic import write_text_atomic

    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    data = (args.data or out / "data").resolve()
    psf = [sys.executable, "-m", "psf"]
    if not (data / SITES[0]).is_dir():
        subprocess.run([*psf, "data", "mni152", str(data), "--centers", "3"], check=True, stdout=subprocess.DEVNULL)
    run = out / "run"
    cmd = [*psf, "fed", "poc", *(f"{s}={data / s}" for s in SITES), "-o", str(run), "--min-clients", "2",
           "--task-timeout", str(args.task_timeout), "--rounds", str(args.rounds), "--steps", args.steps,
           "--views", "1", "--width", "8", "-q"]
    checks: list = []
    result = {"plan": {"sites": SITES, "min_clients": 2, "rounds": args.rounds, "task_timeout": args.task_timeout,
                       "steps": args.steps, "kills": "center_c in round 2, center_b in round 3"}, "checks": checks}

    print(f"attempt 1: {' '.join(cmd)}", flush=True)
    first = result["attempt_1"] = _run_attempt(cmd, run, out, "attempt-1", [("center_c", 2), ("center_b", 3)])
    report = json.loads((run / "report.json").read_text()) if (run / "report.json").is_file() else {}
    hub = report.get("hub", {})
    first["report"] = {"status": hub.get("status"), "stopped": hub.get("stopped"), "dropped": hub.get("dropped"),
                       "rounds": [(r["round"], r["sites"]) for r in hub.get("rounds", [])]}
    _check(checks, "both kills landed mid-round (the site had its round's task and was training it)",
           [(e["site"], e.get("error")) for e in first["kills"]] == [("center_c", None), ("center_b", None)],
           [{k: e.get(k) for k in ("site", "round", "log_at_kill", "error")} for e in first["kills"]])
    _check(checks, "killed processes are gone", all(not e.get("still_alive") for e in first["kills"]),
           [e.get("killed") for e in first["kills"]])
    _check(checks, "attempt 1 exits 1 (stopped: fewer than --min-clients) and says to --resume",
           first["exit_status"] == 1 and any("--resume" in line for line in first["psf_stderr"]), first["psf_stderr"])
    _check(checks, "round 2 went on without center_c; round 3 never finished",
           first["report"]["rounds"] == [(1, list(SITES)), (2, ["center_a", "center_b"])], first["report"]["rounds"])
    dropped = hub.get("dropped", {})
    _check(checks, "report.json names center_c (psf_ae_round round 2) and center_b (round 3)",
           {s: (d.get("task"), d.get("round")) for s, d in dropped.items()}
           == {"center_c": ("psf_ae_round", 2), "center_b": ("psf_ae_round", 3)}, dropped)
    _check(checks, "the hub's state holds 2 finished rounds (ciphertext + count, one atomic file)",
           _state(run)["carry_rounds_done"] == 2 and _state(run)["state_json_rounds_done"] == 2, _state(run))
    leftovers = [str(p.relative_to(run)) for s in SITES for p in (run / s).glob("*") if p.name in ("model.pt", "result.json")]
    _check(checks, "no hospital wrote a model or result in the stopped attempt", not leftovers, leftovers)
    _check(checks, "no half-written file after the kills", not _partial_files(run), _partial_files(run))
    time.sleep(2.0)
    _check(checks, "no process of attempt 1 left running", not _stray_processes(run), _stray_processes(run))

    print(f"attempt 2: {' '.join(cmd)} --resume", flush=True)
    second = result["attempt_2"] = _run_attempt([*cmd, "--resume"], run, out, "attempt-2", [])
    report = json.loads((run / "report.json").read_text()) if (run / "report.json").is_file() else {}
    hub = report.get("hub", {})
    second["report"] = {"status": hub.get("status"), "resumed_after_round": hub.get("resumed_after_round"),
                        "rounds": [(r["round"], r["attempt"], r["sites"]) for r in hub.get("rounds", [])],
                        "dropped": hub.get("dropped"), "hub_seconds": hub.get("seconds"),
                        "test_mean_dice": {s: e.get("metrics", {}).get("test", {}).get("mean_dice")
                                           for s, e in report.get("centers", {}).items()}}
    _check(checks, "attempt 2 (--resume) exits 0 and the hub finished", second["exit_status"] == 0 and hub.get("status") == "finished",
           second["psf_stderr"])
    _check(checks, "the hub resumed after round 2 and ran rounds 3..N only, with all three hospitals",
           hub.get("resumed_after_round") == 2
           and [(r, a) for r, a, _ in second["report"]["rounds"]] == [(1, 1), (2, 1)] + [(r, 2) for r in range(3, args.rounds + 1)]
           and all(s == list(SITES) for r, a, s in second["report"]["rounds"] if a == 2), second["report"]["rounds"])
    dice = second["report"]["test_mean_dice"]
    _check(checks, "every hospital has its model and Dice", all(v is not None for v in dice.values())
           and all((run / s / "model.pt").is_file() for s in SITES), dice)
    traffic = {s: [t["task"] for t in e.get("traffic", [])] for s, e in report.get("centers", {}).items()}
    _check(checks, "each hospital did only the remaining rounds in attempt 2",
           all(t == ["psf_ae_round"] * (args.rounds - 2) + ["psf_encode", "psf_finish"] for t in traffic.values()), traffic)
    _check(checks, "the stopped attempt's report is kept (report.previous.json)", (run / "report.previous.json").is_file())
    _check(checks, "no half-written file after the resumed run", not _partial_files(run), _partial_files(run))
    time.sleep(2.0)
    _check(checks, "no process of attempt 2 left running", not _stray_processes(run), _stray_processes(run))

    result["ok"] = all(c["ok"] for c in checks)
    write_text_atomic(out / "faults.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out / "run.json", json.dumps(run_record(), indent=2) + "\n")
    print(f"{'all checks passed' if result['ok'] else 'SOME CHECKS FAILED'}; wrote {out / 'faults.json'} "
          f"(attempt 1 {first['seconds']:.0f} s, attempt 2 {second['seconds']:.0f} s)")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
