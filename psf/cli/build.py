"""psf-build: a bundle's ONNX graphs -> TensorRT engines (.plan), recorded in psf.json; --verify against ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.registry import GRAPHS


def build(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (from psf-export) or any file in it.")],
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8: built from the bundle's ONNX of that precision (strongly typed).")] = "fp16",
    batch: Annotated[str, typer.Option(help="Optimization profile MIN:OPT:MAX, or one size for fixed shapes (DLA).")] = "1:16:64",
    stages: Annotated[str, typer.Option(help=f"Comma-separated engines to build: {', '.join(GRAPHS)}.")] = ",".join(GRAPHS),
    dla: Annotated[Optional[int], typer.Option("--dla", help="Jetson: build for this DLA core (0 or 1), GPU fallback on; needs fixed shapes, fp16/int8 and TensorRT 8.x-10.7 (JetPack 6).")] = None,
    workspace: Annotated[int, typer.Option(help="Builder workspace in MiB.")] = 2048,
    timing_cache: Annotated[Optional[Path], typer.Option(help="Read and update this timing cache file (faster rebuilds).")] = None,
    version_compatible: Annotated[bool, typer.Option(help="Engines that later TensorRT releases of the same major version can run.")] = False,
    verify: Annotated[bool, typer.Option(help="Compare each engine with ONNX Runtime on real slices (thresholds in psf.export.trt_verify).")] = False,
    verify_data: Annotated[Optional[Path], typer.Option(help="With --verify: a data set split folder (images/, labels/) for Dice against labels (default: MNI152 template slices).")] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compile a bundle to TensorRT engines for this GPU (or Jetson DLA), one per stage and precision."""
    # The options are made inside reports_errors, so a bad flag value is one clear line, not a traceback.
    reports_errors(lambda: _build(bundle, build_options(precision, batch, stages, dla, workspace, timing_cache,
                                                        version_compatible), verify, verify_data, quiet))(debug=debug)


def build_options(precision: str, batch: str, stages: str, dla, workspace: int, timing_cache, version_compatible: bool):
    """BuildOptions from the command line's text, checked (a UsageError names the flag)."""
    from psf.export.trt_build import BuildOptions, parse_batch

    options = BuildOptions(precision=precision, batch=parse_batch(batch),
                           stages=tuple(s.strip() for s in stages.split(",") if s.strip()), dla_core=dla,
                           workspace_mib=workspace, timing_cache=timing_cache, version_compatible=version_compatible)
    options.check()
    return options


def _build(bundle: Path, options, verify: bool, verify_data: Path | None, quiet: bool) -> None:
    """Build `options` (a checked BuildOptions) for the bundle at `bundle`, then --verify if asked."""
    from psf.export.trt_build import build_bundle, plan_builds
    from psf.manifest import load_manifest
    from psf.progress import stderr

    manifest = load_manifest(bundle)
    jobs = plan_builds(manifest, options)  # every flag and file is checked before TensorRT is loaded

    def built(job, entry):
        stderr.print(f"built {entry['file']} from {job.onnx.name} in {entry['build_s']} s "
                     f"(TensorRT {entry['tensorrt']}, {entry['gpu']}, sm {entry['compute_capability']})", highlight=False)

    with stderr.status(f"building {len(jobs)} {options.precision} engine(s); TensorRT takes a while per engine"):
        entries = build_bundle(manifest, options, on_built=None if quiet else built)
    print(f"wrote {', '.join(e['file'] for e in entries)} and updated {manifest.root / 'psf.json'}")
    if verify:
        _verify(manifest, options, verify_data)


def _verify(manifest, options, verify_data: Path | None) -> None:
    from psf.errors import PsfError
    from psf.export.trt_verify import verify_engines

    images, truth = _verify_inputs(manifest, verify_data)
    checks = verify_engines(manifest, options.precision, options.stages, images, truth)
    failed = []
    for check in checks:
        problems = check.failures()
        dice = "" if check.dice_change is None else f", Dice change {check.dice_change:+.4f}"
        print(f"verify {check.stage:9s} {check.precision}: max abs {check.max_abs:.2e}, median {check.median_abs:.2e}{dice} "
              f"-> {'FAIL: ' + '; '.join(problems) if problems else 'ok'}")
        failed += [f"{check.stage}: {p}" for p in problems]
    if failed:
        raise PsfError(f"--verify: {len(failed)} check(s) failed ({'; '.join(failed)}); the engines are written but do "
                       "not match ONNX Runtime, do not deploy them")


def _verify_inputs(manifest, verify_data: Path | None):
    """(images, labels or None): a data split's slices, or MNI152 template slices."""
    import numpy as np

    if verify_data is None:
        from psf.export.calibration import template_slices

        return template_slices(manifest.image_size, manifest.normalization, count=32), None
    from psf.train.data import load_split

    split = load_split(verify_data.parent, verify_data.name, manifest.image_size, manifest.normalization, manifest.slice_axis)
    return split.images, np.where(split.valid, split.labels, 0)
