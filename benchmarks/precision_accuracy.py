"""Accuracy and CPU latency of each ONNX precision variant of a bundle, with ONNX Runtime.

    python -m benchmarks.precision_accuracy demo/bundle demo/data [--out FOLDER]

For fp32, fp16, int8 (the symmetric Q/DQ file TensorRT builds from) and int8-cpu (the uint8 file ONNX
Runtime runs on CPUs): test-split Dice per class and the change from fp32, then the fused pipeline's
latency at batch 1 (one session, spinning, as psf-infer runs it) and batch 16. Every figure is measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from psf.bench.timing import time_calls
from psf.manifest import load_manifest, verify_file
from psf.metrics import confusion_counts, report
from psf.runtime.ort import OrtRunner
from psf.train.data import load_split

VARIANTS = ("fp32", "fp16", "int8", "int8-cpu")


def measure(bundle: Path, data: Path, threads: int, iters: int) -> dict:
    manifest = load_manifest(bundle)
    test = load_split(data, "test", manifest.image_size, manifest.normalization)
    rows = []
    for variant in VARIANTS:
        with OrtRunner(verify_file(manifest, "pipeline", variant), threads=threads, spin=True) as runner:
            probs = np.concatenate([runner.infer({"image": test.images[i : i + 16]})["probs"] for i in range(0, len(test), 16)])
            pred = probs.argmax(1)
            scores = report(confusion_counts(pred[test.valid], test.labels[test.valid], manifest.num_classes), manifest.labels)
            one, sixteen = test.images[:1], test.images[:16]
            lat1 = time_calls(lambda: runner.infer({"image": one}), warmup=20, iters=iters)
            lat16 = time_calls(lambda: runner.infer({"image": sixteen}), warmup=3, iters=max(10, iters // 8))
        rows.append({"variant": variant, "dice": scores["dice"], "mean_dice": scores["mean_dice"],
                     "batch1_p50_ms": lat1["p50"], "batch1_p99_ms": lat1["p99"],
                     "batch16_p50_ms": lat16["p50"], "batch16_slices_per_s": round(16000 / lat16["p50"], 1)})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    for row in rows:
        row["dice_change"] = {k: round(row["dice"][k] - base["dice"][k], 4) for k in manifest.labels[1:]}
        row["mean_dice_change"] = round(row["mean_dice"] - base["mean_dice"], 4)
    return {"bundle": str(bundle), "test_slices": len(test), "threads": threads, "rows": rows,
            "variant_info": manifest.variant_info}


def markdown(result: dict) -> str:
    labels = list(result["rows"][0]["dice_change"])
    head = "| variant | " + " | ".join(f"Dice {k}" for k in labels) + " | mean | change | batch-1 p50 ms | p99 ms | batch-16 slices/s |"
    lines = [head, "|" + " --- |" * (len(labels) + 6)]
    for r in result["rows"]:
        dice = " | ".join(f"{r['dice'][k]:.4f}" for k in labels)
        lines.append(f"| {r['variant']} | {dice} | {r['mean_dice']:.4f} | {r['mean_dice_change']:+.4f} | "
                     f"{r['batch1_p50_ms']:.2f} | {r['batch1_p99_ms']:.2f} | {r['batch16_slices_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--out", type=Path, help="output folder (default: benchmarks/results/<date>-precision-cpu)")
    args = parser.parse_args()
    from psf.bench.provenance import results_dir, write_run_json
    from psf.io.atomic import write_text_atomic

    out = args.out or results_dir("precision-cpu")
    out.mkdir(parents=True, exist_ok=True)
    result = measure(args.bundle, args.data, args.threads, args.iters)
    table = markdown(result)
    write_text_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out / "result.md", table)
    write_run_json(out)
    print(table, end="")


if __name__ == "__main__":
    main()
