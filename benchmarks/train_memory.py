"""Peak memory of psf-train against the size of the data set: does it grow with the number of slices?

Writes psf-layout data sets of the same cases repeated (N slices in total: 70 % train, 15 % val, 15 %
test, 100 axial slices per case), trains each with the same small step budget in a fresh process and
records that process' peak resident memory (getrusage of the child), its wall time and the size of the
slice cache on disk. The cases are nested discs with noise: what is measured is the data path, not the
model, so the content does not matter; their count does. The model is fixed at patch 4 (psf-train's default
at this size is 2 since 2026-11-30) so the figures compare with the runs before the slice cache.

    python -m benchmarks.train_memory                     # 2,000 and 20,000 slices
    python -m benchmarks.train_memory --slices 2000 20000 --steps 30 --views 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from psf.bench.provenance import results_dir, write_run_json

SLICES_PER_CASE = 100
SIZE = 64


def write_dataset(root: Path, slices: int, seed: int = 0) -> Path:
    """A psf-dataset/1 folder of slices // 100 cases (MR-like, 3 labels), split 70/15/15 by case."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    cases = max(3, slices // SLICES_PER_CASE)
    names = [f"case{i:05d}" for i in range(cases)]
    n_val = n_test = max(1, round(cases * 0.15))
    split = {"train": names[: cases - n_val - n_test], "val": names[cases - n_val - n_test : cases - n_test],
             "test": names[cases - n_test :]}
    yy, xx = np.mgrid[:SIZE, :SIZE]
    templates = []
    for t in range(4):  # a few distinct cases, repeated: writing 200 distinct volumes would dominate the run
        r = np.hypot(yy - SIZE / 2 - t, xx - SIZE / 2 + t)[..., None] + rng.normal(0, 1, (SIZE, SIZE, SLICES_PER_CASE))
        label = np.where(r < 12, 2, np.where(r < 24, 1, 0)).astype(np.uint8)
        image = (label * 60 + rng.normal(0, 10, label.shape)).astype(np.float32)
        templates.append((nib.Nifti1Image(image, np.eye(4)), nib.Nifti1Image(label, np.eye(4))))
    for part, members in split.items():
        (root / part / "images").mkdir(parents=True, exist_ok=True)
        (root / part / "labels").mkdir(parents=True, exist_ok=True)
        for i, case in enumerate(members):
            image, label = templates[i % len(templates)]
            nib.save(image, str(root / part / "images" / f"{case}.nii.gz"))
            nib.save(label, str(root / part / "labels" / f"{case}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "format": "psf-dataset/1", "name": f"memory-{slices}", "modality": "MR", "channels": ["T1"],
        "labels": ["background", "outer", "inner"], "file_ending": ".nii.gz", "cases": split,
        "source": {"layout": "folders", "path": None, "split_seed": seed, "split_file": None}}))
    return root


def measure(data: Path, out: Path, steps: int, views: int, threads: int) -> dict:
    """psf-train in a child process; its peak RSS from getrusage (the only child this process waits for)."""
    command = [sys.executable, "-m", "psf", "train", str(data), "-o", str(out), "--steps", str(steps),
               "--views", str(views), "--image-size", str(SIZE), "--patch", "4", "--threads", str(threads), "--min-ceiling", "0",
               "--device", "cpu", "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"psf-train failed on {data}:\n{done.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:
        raise SystemExit("getrusage reports the peak of all children so far: run one size per process (--slices N)")
    report = json.loads(out.with_suffix(".json").read_text())
    cache = data / ".psf-cache"
    return {"slices": report["training"]["slices"], "peak_rss_mib": round(peak_kib / 1024, 1),
            "wall_s": round(seconds, 1), "cache_mib": round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20, 1),
            "command": " ".join(command[2:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/psf-train-memory"))
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results/<date>-train-memory)")
    args = parser.parse_args()
    if len(args.slices) > 1:  # one size per child process: RUSAGE_CHILDREN's peak is a maximum over all children
        rows = []
        for n in args.slices:
            child = [sys.executable, "-m", "benchmarks.train_memory", "--slices", str(n), "--steps", str(args.steps),
                     "--views", str(args.views), "--threads", str(args.threads), "--work", str(args.work), "--out", "-"]
            rows.append(json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout))
            print(f"{n:>6} slices: peak RSS {rows[-1]['peak_rss_mib']:.0f} MiB, {rows[-1]['wall_s']:.0f} s, "
                  f"cache {rows[-1]['cache_mib']:.0f} MiB", flush=True)
        growth = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"] - 1
        out = args.out or results_dir("train-memory")
        out.mkdir(parents=True, exist_ok=True)
        result = {"rows": rows, "growth": round(growth, 4), "steps": args.steps, "views": args.views,
                  "image_size": SIZE, "threads": args.threads}
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        lines = ["| slices (train/val/test) | peak RSS (MiB) | wall (s) | slice cache (MiB) |", "| --- | --- | --- | --- |"]
        lines += [f"| {sum(r['slices'].values()):,} ({r['slices']['train']}/{r['slices']['val']}/{r['slices']['test']}) | "
                  f"{r['peak_rss_mib']:.0f} | {r['wall_s']:.0f} | {r['cache_mib']:.0f} |" for r in rows]
        lines.append(f"\nPeak RSS growth from {rows[0]['slices']['train'] + rows[0]['slices']['val'] + rows[0]['slices']['test']:,} "
                     f"to {sum(rows[-1]['slices'].values()):,} slices: {growth * 100:+.1f} % (target <= +10 %).")
        (out / "result.md").write_text("\n".join(lines) + "\n")
        write_run_json(out, seed=0, steps=args.steps, views=args.views)
        print("\n".join(lines))
        return
    n = args.slices[0]
    work = args.work / f"slices-{n}"
    shutil.rmtree(work, ignore_errors=True)
    data = write_dataset(work / "data", n)
    row = measure(data, work / "model.pt", args.steps, args.views, args.threads)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
