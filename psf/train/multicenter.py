"""Several centers, one mapping net: psf-train --center, a thin way to run psf's NVIDIA FLARE federation.

There is one implementation of multi-center training, psf.fed (extra `federated`): hospitals train
their autoencoders locally, the hub adds their updates under homomorphic encryption (it never holds
plain weights, nor their average), hospitals send encoded pairs only, the hub trains the mapping net
and returns it. `psf-train --center` runs it in NVFlare's simulator on this machine and writes the
first center's model.pt (every center holds the same shared autoencoders and the hub's map) plus the
run folder OUT.fed/ (each center's own model.pt, the hub's workspace, report.json). The in-process
averaging that ran here before (a process holding every decoder in the clear) is gone.

Budget: per participant, as in a real federation where the centers train at the same time on their
own machines: over all rounds each center's client stages get what a center training alone gets
(psf.fed.plan.round_stage), and the hub's stage gets the single-center server budget.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from psf.errors import UsageError
from psf.train.run import TrainOptions
from psf.train.stages import StageOptions


@dataclass(frozen=True)
class Center:
    name: str
    data: Path

    @classmethod
    def parse(cls, spec: str) -> "Center":
        """NAME=DIR, as given to --center."""
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise UsageError(f"--center {spec!r}: expected NAME=DIR, e.g. --center site_a=data/center_a")
        if not Path(folder).is_dir():
            raise UsageError(f"--center {spec!r}: {folder} is not a folder")
        return cls(name, Path(folder))


def run_multicenter(opts: TrainOptions, centers: list[Center], rounds: int = 4) -> dict:
    """Train on `centers` in NVFlare's simulator; returns per-center metrics and the run's record."""
    if len({c.name for c in centers}) != len(centers) or len(centers) < 2:
        raise UsageError("--center: give two or more centers with different names")
    if rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {rounds}")
    from psf.fed.plan import make_plan
    from psf.fed.run import FedRun, run_sim
    from psf.io.atomic import atomic_path

    run_dir = opts.out.with_name(f"{opts.out.stem}.fed")
    if run_dir.exists():
        if not (run_dir / "sites").is_dir():
            raise UsageError(f"{run_dir} exists and is not a psf federation run folder; move it away")
        shutil.rmtree(run_dir)  # a previous run of this command: replaced, as psf-train replaces model.pt
    if opts.threads:
        os.environ["PSF_FED_THREADS"] = str(opts.threads)
    report = run_sim(FedRun(out=run_dir, centers={c.name: c.data for c in centers}, plan=make_plan(opts, rounds),
                            min_clients=len(centers), key=opts.key))
    with atomic_path(opts.out) as tmp:
        shutil.copyfile(run_dir / centers[0].name / "model.pt", tmp)
    centers_metrics = {name: entry["metrics"]["test"] for name, entry in report["centers"].items()}
    training = {"federated": "NVIDIA FLARE simulator", "nvflare": report["nvflare"], "run": str(run_dir),
                "centers": {c.name: str(c.data) for c in centers}, "federated_rounds": rounds,
                "stages": {"rounds": report["hub"]["rounds"], "mapping": report["hub"]["mapping"]["log"]},
                "traffic": {name: entry.get("traffic", []) for name, entry in report["centers"].items()},
                "seconds": report["seconds"]}
    return {"metrics": {"centers": centers_metrics}, "training": training}


def _stage(opts: TrainOptions, stage: str, rounds: int, r: int) -> StageOptions:
    """One center's part of a client stage in round r (psf.fed.plan.round_stage)."""
    from psf.fed.plan import round_stage

    return round_stage(opts, stage, rounds, r)
