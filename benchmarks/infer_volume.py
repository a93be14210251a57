"""psf-infer on one 200-slice 256x256 NIfTI volume: wall time, its breakdown, and the child's peak RSS.

The volume is the MNI152 T1 template (from nilearn) padded to 256 x 256 in-plane and 200 slices, so it
is real anatomy at the size the issue names. Usage:
    python -m benchmarks.infer_volume demo/bundle [--mode local|staged] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def make_volume(path: Path) -> None:
    from psf.data.mni152 import TEMPLATE_FILES, template_dir

    template = nib.load(template_dir() / TEMPLATE_FILES["t1"])
    data = np.asarray(template.dataobj)
    volume = np.zeros((256, 256, 200), dtype=data.dtype)
    volume[29 : 29 + 197, 11 : 11 + 233, 5 : 5 + 189] = data
    affine = template.affine.copy()
    affine[:3, 3] -= template.affine[:3, :3] @ [29, 11, 5]
    nib.save(nib.Nifti1Image(volume, affine), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--mode", default="local")
    parser.add_argument("--out", type=Path, help="output folder (default: benchmarks/results/<date>-infer-volume)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scan = Path(tmp) / "volume200.nii.gz"
        make_volume(scan)
        report = Path(tmp) / "run.json"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "psf", "infer", "--engine", str(args.bundle), str(scan), "-o",
                        str(Path(tmp) / "out"), "--mode", args.mode, "--report", str(report), "-q"], check=True)
        wall = time.perf_counter() - started
        run = json.loads(report.read_text())
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    parts = run["breakdown_seconds"]
    io_share = (parts["read_write"] + parts["preprocess"] + parts["postprocess"]) / run["seconds"]
    text = json.dumps({"slices": run["slices"], "process_wall_s": round(wall, 2), "run_s": run["seconds"],
                       "breakdown_s": parts, "io_pre_post_share": round(io_share, 3),
                       "peak_rss_mib": round(peak_mib, 1), "mode": args.mode}, indent=2)
    from psf.bench.provenance import results_dir, write_run_json
    from psf.io.atomic import write_text_atomic

    out = args.out or results_dir("infer-volume")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "result.json", text + "\n")
    write_run_json(out)
    print(text)


if __name__ == "__main__":
    main()
