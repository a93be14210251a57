"""psf against a plain U-Net on the bring-your-own-data factory tasks (issue 14's target: test Dice within 0.02).

For each task of tests/data/factory.py (CT-like binary in the MSD layout, 2-channel 4-label MR in the nnU-Net v2
layout, RGB ultrasound-like frames in image/mask folders) the script writes the raw data set at a size larger
than the tests use, runs `psf data import` on it, then trains, in subprocesses exactly as a user would:

    psf train DATA -o psf.pt  --image-size S --seed N --threads T [--steps PSF_STEPS]
    psf train DATA -o unet.pt --image-size S --seed N --threads T --baseline unet --steps unet=UNET_STEPS

Budget: psf's stages run their step budget (psf-train's default image_ae=2000, mask_ae=900, mapping=2600
unless --psf-steps); the U-Net gets as many steps as psf's mapping net (the network that turns an image into a
mask in psf's pipeline; same batch of 16, same seed, same augmented views), unless --unet-steps. Both models'
test Dice comes from their checkpoint reports (psf.metrics.report over the test split's pixels, pooled over
cases: the number psf-train prints). The psf row also carries the mask autoencoder's ceiling
(decode(encode(true mask)) on val and test): no mapping net can beat it, so it tells a representation limit
from a training limit.

    python -m benchmarks.byod_baseline [--cases 20 --slices 16 --frames 120] [--threads 1] [--seed 0]
                                       [--psf-steps SPEC] [--unet-steps N] [--tasks ct-msd,mr-nnunet,us-folders]
                                       [--psf-flags "--patch 2"] [--topic byod-baseline] [--work DIR] [--keep]
                                       [--unet-from RESULT.json]

--psf-flags passes further psf-train flags (model geometry such as --patch or --mask-latent) to the psf run only;
the U-Net command is unchanged, so --unet-from can reuse an earlier run's U-Net rows.

Writes benchmarks/results/<date>-<topic>/: result.json (every figure), result.md (the table), run.json
(provenance), reports/<task>-{psf,unet}.json (psf-train's own reports). Each command's record holds its wall and
CPU seconds; its "peak_rss_mib" is getrusage's largest child RSS so far in this run (an upper bound for that
command, not its own peak).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ("ct-msd", "mr-nnunet", "us-folders")
TARGET_GAP = 0.02  # issue 14: psf within 0.02 of the U-Net


def make_raw(task: str, root: Path, cases: int, slices: int, frames: int, seed: int) -> tuple[Path, list[str]]:
    """The raw task folder and the extra `psf data import` flags it needs."""
    from tests.data import factory

    if task == "ct-msd":
        return factory.msd_ct_task(root, cases=cases, slices=slices, seed=seed), []
    if task == "mr-nnunet":
        return factory.nnunet_mr_task(root, cases=cases, slices=slices, seed=seed, test_cases=0), []
    if task == "us-folders":
        return factory.us_folder_task(root, cases=frames, seed=seed), ["--modality", "US"]
    raise SystemExit(f"unknown task {task!r}: choose from {', '.join(TASKS)}")


def timed(cmd: list[str], log: Path) -> dict:
    """Run `cmd` (stdout+stderr to `log`); wall seconds, the child's CPU seconds, exit status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": cmd, "rc": rc, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "peak_rss_mib": round(after.ru_maxrss / 1024, 0)}


def psf_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "psf", *args]


def summarize_model(report: dict, kind: str) -> dict:
    """The figures of one psf-train report that the comparison needs."""
    test = report["metrics"]["test"]
    row = {"test_dice": test["dice"], "test_mean_dice": test["mean_dice"], "val_mean_dice": report["metrics"]["val"]["mean_dice"],
           "train_seconds": report["training"]["seconds"],
           "stages": {name: {k: log.get(k) for k in ("steps", "epochs", "seconds", "planned_steps", "time_bound")}
                      for name, log in report["training"]["stages"].items()}}
    if kind == "psf":
        for split in ("val", "test"):
            ceiling = report["metrics"].get(f"mask_autoencoder_{split}")
            if ceiling:
                row[f"ceiling_{split}"] = {"dice": ceiling["dice"], "mean_dice": ceiling["mean_dice"]}
        row["ceiling_below_minimum"] = report["training"].get("ceiling_below_minimum")
    else:
        row["parameters"] = report["training"].get("parameters")
    return row


def run_task(task: str, args, work: Path, reports: Path, reused: dict | None = None) -> dict:
    folder = work / task
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    raw, import_flags = make_raw(task, folder / "raw", args.cases, args.slices, args.frames, args.seed)
    data = folder / "data"
    imported = timed(psf_cli("data", "import", str(raw), str(data), "--seed", str(args.seed), "-q", *import_flags),
                     folder / "import.log")
    if imported["rc"]:
        raise SystemExit(f"{task}: psf data import failed; see {folder / 'import.log'}")
    info = json.loads((data / "dataset.json").read_text())
    common = ["--image-size", str(args.image_size), "--seed", str(args.seed), "--threads", str(args.threads), "-q"]
    runs = {
        "psf": ["train", str(data), "-o", str(folder / "psf.pt"), *common,
                *(["--steps", args.psf_steps] if args.psf_steps else []), *shlex.split(args.psf_flags)],
        "unet": ["train", str(data), "-o", str(folder / "unet.pt"), *common, "--baseline", "unet",
                 "--steps", f"unet={args.unet_steps}"],
    }
    result = {"dataset": {"name": info["name"], "modality": info["modality"], "channels": info["channels"],
                          "labels": info["labels"], "cases": {s: len(c) for s, c in info["cases"].items()}},
              "import": imported}
    if reused is not None:  # --unet-from: the same U-Net command and seed was run before (CPU training is bit-identical)
        runs.pop("unet")
        result["unet"] = {**reused, "reused_from": str(args.unet_from)}
    for kind, cmd in runs.items():
        print(f"{task}: training {kind} ...", file=sys.stderr, flush=True)
        done = timed(psf_cli(*cmd), folder / f"{kind}.log")
        report_path = folder / f"{kind}.json"
        # psf-train exits 3 when the mask autoencoder's ceiling is below --min-ceiling: the model and its
        # report are written all the same, and the ceiling is exactly what this benchmark wants to see.
        if done["rc"] not in (0, 3) or not report_path.exists():
            raise SystemExit(f"{task}: {kind} training failed (exit {done['rc']}); see {folder / f'{kind}.log'}")
        shutil.copyfile(report_path, reports / f"{task}-{kind}.json")
        result[kind] = {**summarize_model(json.loads(report_path.read_text()), kind), "run": done}
    labels = info["labels"][1:]
    result["gap"] = {"mean": round(result["unet"]["test_mean_dice"] - result["psf"]["test_mean_dice"], 4),
                     **{name: round(result["unet"]["test_dice"][name] - result["psf"]["test_dice"][name], 4) for name in labels}}
    result["within_target"] = result["gap"]["mean"] <= TARGET_GAP
    return result


def table(results: dict) -> str:
    """The markdown table (one row per task) and a per-label table."""
    lines = ["| task | cases train/val/test | psf mean Dice | U-Net mean Dice | gap (U-Net - psf) | within 0.02 | "
             "mask-AE ceiling val / test | psf wall / CPU s | U-Net wall / CPU s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task, r in results.items():
        c = r["dataset"]["cases"]
        p, u = r["psf"], r["unet"]
        lines.append(f"| {task} ({r['dataset']['modality']}, {len(r['dataset']['channels'])} ch, {len(r['dataset']['labels'])} labels) "
                     f"| {c['train']}/{c['val']}/{c['test']} | {p['test_mean_dice']:.4f} | {u['test_mean_dice']:.4f} "
                     f"| {r['gap']['mean']:+.4f} | {'yes' if r['within_target'] else 'no'} "
                     f"| {p['ceiling_val']['mean_dice']:.4f} / {p['ceiling_test']['mean_dice']:.4f} "
                     f"| {p['run']['wall_s']:.0f} / {p['run']['cpu_s']:.0f} | {u['run']['wall_s']:.0f} / {u['run']['cpu_s']:.0f} |")
    lines += ["", "| task | label | psf | U-Net | gap | mask-AE ceiling (test) |", "| --- | --- | --- | --- | --- | --- |"]
    for task, r in results.items():
        for name in r["dataset"]["labels"][1:]:
            lines.append(f"| {task} | {name} | {r['psf']['test_dice'][name]:.4f} | {r['unet']['test_dice'][name]:.4f} "
                         f"| {r['gap'][name]:+.4f} | {r['psf']['ceiling_test']['dice'][name]:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--cases", type=int, default=20, help="CT and MR tasks: labelled cases (split 60/20/20 by case)")
    parser.add_argument("--slices", type=int, default=16, help="CT and MR tasks: axial slices per case")
    parser.add_argument("--frames", type=int, default=120, help="ultrasound task: frames (each its own case)")
    parser.add_argument("--image-size", type=int, default=64, help="the factory's images are 64 x 64")
    parser.add_argument("--psf-steps", default=None, help="psf-train --steps (default: psf-train's own per-stage defaults)")
    parser.add_argument("--unet-steps", type=int, default=None, help="default: psf's mapping-net steps")
    parser.add_argument("--psf-flags", default="", help='further psf-train flags for the psf run only, e.g. "--patch 2"')
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--topic", default="byod-baseline")
    parser.add_argument("--work", type=Path, default=None, help="data sets and checkpoints (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--unet-from", type=Path, default=None,
                        help="an earlier result.json: reuse its U-Net rows when its U-Net budget, seed, image size and "
                             "factory sizes are this run's (saves the U-Net's time when only psf's budget changes)")
    args = parser.parse_args()

    from psf.bench.provenance import results_dir, write_run_json
    from psf.io.atomic import write_text_atomic
    from psf.train.run import DEFAULT_STAGE_STEPS, parse_steps

    psf_steps = {**DEFAULT_STAGE_STEPS, **(parse_steps(args.psf_steps) or {})}
    psf_steps.pop("unet", None)
    if args.unet_steps is None:
        args.unet_steps = psf_steps["mapping"]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    out = results_dir(args.topic)
    reports = out / "reports"
    reports.mkdir(exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="psf-byod-baseline-"))
    earlier = json.loads(args.unet_from.read_text()) if args.unet_from else None
    if earlier is not None:
        same = (earlier["budget"]["unet_steps"] == args.unet_steps and earlier["budget"]["seed"] == args.seed
                and earlier["budget"]["image_size"] == args.image_size
                and earlier["factory"] == {"cases": args.cases, "slices": args.slices, "frames": args.frames})
        if not same:
            raise SystemExit(f"--unet-from {args.unet_from}: its U-Net budget, seed, image size or factory sizes differ from this run's")
    started = time.perf_counter()
    results = {}
    try:
        for task in tasks:
            reused = earlier["tasks"][task]["unet"] if earlier and task in earlier["tasks"] else None
            results[task] = run_task(task, args, work, reports, reused)
            r = results[task]
            print(f"{task}: psf {r['psf']['test_mean_dice']:.4f} unet {r['unet']['test_mean_dice']:.4f} "
                  f"gap {r['gap']['mean']:+.4f} (ceiling test {r['psf']['ceiling_test']['mean_dice']:.4f})", flush=True)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    document = {"target": f"psf test mean Dice within {TARGET_GAP} of the U-Net (issue 14)",
                "budget": {"psf_steps": psf_steps, "unet_steps": args.unet_steps, "batch": 16, "seed": args.seed,
                           "threads": args.threads, "image_size": args.image_size, "psf_flags": args.psf_flags},
                "factory": {"cases": args.cases, "slices": args.slices, "frames": args.frames},
                "dice": "pooled over the test split's pixels (psf.metrics.report); mean over foreground labels",
                "gap": "U-Net minus psf (positive: psf is behind)",
                "unet_from": str(args.unet_from) if args.unet_from else None,
                "wall_s": round(time.perf_counter() - started, 1), "tasks": results}
    write_text_atomic(out / "result.json", json.dumps(document, indent=2) + "\n")
    header = (f"# psf vs plain U-Net on the factory tasks\n\npsf steps {psf_steps}, U-Net steps {args.unet_steps} "
              f"(batch 16), seed {args.seed}, image size {args.image_size}, --threads {args.threads}; psf-train flags {args.psf_flags or '(defaults)'}; factory cases "
              f"{args.cases} x {args.slices} slices (CT, MR), {args.frames} frames (US). Gap = U-Net - psf, test Dice "
              f"pooled over pixels. Whole run {document['wall_s']:.0f} s."
              + (f" U-Net rows reused from {args.unet_from} (same command and seed; not retrained)." if args.unet_from else "")
              + "\n\n")
    write_text_atomic(out / "result.md", header + table(results))
    write_run_json(out, ["python", "-m", "benchmarks.byod_baseline", *sys.argv[1:]], seed=args.seed, budget=document["budget"], factory=document["factory"])
    print(table(results))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
