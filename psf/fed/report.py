"""report.json's comparison: each hospital training alone with the same per-participant budget."""

from __future__ import annotations

import json
import time
from pathlib import Path

from psf.fed.plan import train_options
from psf.io.atomic import write_text_atomic


def compare_alone(report: dict, centers: dict[str, Path], out: Path, key: Path | None = None) -> dict:
    """Train each center alone (psf-train's single-center run, the same plan) and add, per center, its
    Dice alone and the federated gain; rewrites out/report.json."""
    from psf.train.run import run_training

    for name, data in centers.items():
        started = time.perf_counter()
        alone = run_training(train_options(report["plan"], data, out / name / "alone.pt", key))
        entry = report["centers"][name]
        entry["alone"] = {"test": alone["metrics"]["test"], "seconds": round(time.perf_counter() - started, 1)}
        if "metrics" in entry:
            entry["gain_mean_dice"] = round(entry["metrics"]["test"]["mean_dice"] - alone["metrics"]["test"]["mean_dice"], 4)
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def summary_lines(report: dict) -> list[str]:
    lines = []
    for name, entry in report["centers"].items():
        if "metrics" not in entry:
            lines.append(f"{name}: dropped at {where_dropped(entry.get('dropped'))}")
            continue
        test = entry["metrics"]["test"]
        line = f"{name}: federated dice " + " ".join(f"{k}={v:.4f}" for k, v in test["dice"].items() if k != "other")
        if "alone" in entry:
            alone = entry["alone"]["test"]
            line += " | alone " + " ".join(f"{k}={v:.4f}" for k, v in alone["dice"].items() if k != "other")
            line += f" | gain {entry['gain_mean_dice']:+.4f} mean"
        sent = sum(t["sent_bytes"] for t in entry.get("traffic", []))
        received = sum(t["received_bytes"] for t in entry.get("traffic", []))
        lines.append(line + f" | sent {sent / 1e6:.1f} MB, received {received / 1e6:.1f} MB")
    return lines


def where_dropped(drop) -> str:
    """'psf_ae_round round 2 (no answer within --task-timeout 30 s)' from a hub.json drop entry."""
    if not isinstance(drop, dict):
        return str(drop)
    where = f"{drop.get('task')}" + (f" round {drop['round']}" if drop.get("round") else "")
    attempt = f", attempt {drop['attempt']}" if "attempt" in drop else ""
    return f"{where} ({drop.get('why')}{attempt})"
