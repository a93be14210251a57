"""Engine records in a bundle's manifest against this machine: plain data, no TensorRT, no GPU.

What psf-build recorded of an engine (TensorRT version, compute capability, file and ONNX hashes, how it
was built) is compared here with the files on disk and with this machine before TensorRT loads anything,
and every refusal names the exact psf-build command that remakes the engine. psf-build (psf.export)
writes these records; the runtime only reads them, so this module depends on nothing under psf.export.
"""

from __future__ import annotations

from pathlib import Path

from psf.errors import EngineMismatch, UsageError
from psf.manifest import Manifest, sha256_file
from psf.registry import GRAPHS

ENGINE_SUFFIXES = (".plan", ".engine")

# Cross-major version compatibility that NVIDIA documents (TensorRT 11.4 support matrix: "TensorRT 10
# version-compatible engines can run with a TensorRT 11 runtime, and TensorRT 8 ... with TensorRT 10").
CROSS_MAJOR = {(10, 11), (8, 10)}


def engine_file(stage: str, precision: str) -> str:
    """map -> map.fp16.plan: one engine per stage and precision, side by side in the bundle."""
    return f"{stage}.{precision}.plan"


def rebuild_command(root: Path | str, stage: str, entry: dict) -> str:
    """The exact psf-build call that remakes an engine recorded in the manifest."""
    parts = ["psf-build", str(root), "--precision", entry["precision"], "--stages", stage,
             "--batch", ":".join(str(b) for b in entry["batch"])]
    if entry.get("dla_core") is not None:
        parts += ["--dla", str(entry["dla_core"])]
    if entry.get("version_compatible"):
        parts.append("--version-compatible")
    return " ".join(parts)


def _version(text: str) -> list[int]:
    """'10.13.3.9' -> [10, 13, 3, 9]; a suffix like '10.7.0.post1' keeps its numeric part."""
    out = []
    for part in str(text).split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return out


def tensorrt_compatible(built: str, installed: str, version_compatible: bool) -> bool:
    """Can a TensorRT `installed` runtime load an engine built by TensorRT `built`?

    Plain engines: the same release, major.minor.patch.build (the build number is compared where both
    versions carry one; pip's 10.3.0 says three components, apt's 10.3.0.30 four). Version-compatible
    engines: any later release of the same major version, or across the majors NVIDIA lists (10 -> 11)."""
    b, i = _version(built), _version(installed)
    if not version_compatible:
        common = max(3, min(len(b), len(i)))
        return b[:common] == i[:common]
    if b[0] == i[0]:
        return i >= b
    return (b[0], i[0]) in CROSS_MAJOR


def no_engine_message(manifest: Manifest, stage: str, precision: str | None) -> str:
    """The bundle has no such engine: what was built and the psf-build command that builds this one."""
    built = ", ".join(f"{s}/{p}" for s, by in manifest.engines.items() for p in by) or "none"
    which = f"{precision} {stage}" if precision else stage
    return (f"the bundle at {manifest.root} has no {which} engine (built: {built}); build it with: "
            f"psf-build {manifest.root} --precision {precision or 'fp16'} --stages {stage}")


def check_engine(manifest: Manifest, stage: str, precision: str, machine: dict | None) -> Path:
    """The engine file of (stage, precision), after checking it (file, hashes) and, unless `machine` is None,
    its TensorRT version and compute capability against `machine` ({"tensorrt": "10.3.0",
    "compute_capability": "8.7"}); EngineMismatch names the rebuild command."""
    root = manifest.root
    entry = manifest.engines.get(stage, {}).get(precision)
    if entry is None:
        raise EngineMismatch(no_engine_message(manifest, stage, precision))
    rebuild = rebuild_command(root, stage, entry)
    path = root / entry["file"]
    if not path.is_file():
        raise EngineMismatch(f"{path} is missing; rebuild it with: {rebuild}")
    if sha256_file(path) != entry["sha256"]:
        raise EngineMismatch(f"{path}: sha256 does not match the manifest (changed or corrupted); rebuild it with: {rebuild}")
    source = manifest.stage_file(stage, precision)
    if source.sha256 != entry["onnx_sha256"]:
        raise EngineMismatch(f"{path} was built from another {source.file} (the bundle was re-exported since); "
                             f"rebuild it with: {rebuild}")
    if machine is not None:
        check_machine(manifest, stage, precision, machine)
    return path


def check_machine(manifest: Manifest, stage: str, precision: str, machine: dict) -> None:
    """The recorded engine's TensorRT version and compute capability against this machine's (no file I/O)."""
    entry = manifest.engines[stage][precision]
    path, rebuild = manifest.root / entry["file"], rebuild_command(manifest.root, stage, entry)
    if not tensorrt_compatible(entry["tensorrt"], machine["tensorrt"], bool(entry.get("version_compatible"))):
        raise EngineMismatch(f"{path} was built with TensorRT {entry['tensorrt']}, this machine has {machine['tensorrt']}; "
                             f"rebuild it here with: {rebuild}")
    if entry["compute_capability"] != machine["compute_capability"]:
        raise EngineMismatch(f"{path} was built for compute capability {entry['compute_capability']} ({entry['gpu']}), "
                             f"this GPU is {machine['compute_capability']}; rebuild it here with: {rebuild}")


def engine_precision(manifest: Manifest, file_name: str) -> str | None:
    """The precision of the engine stored as `file_name` in this bundle (for psf-infer --engine map.fp16.plan)."""
    for by_precision in manifest.engines.values():
        for precision, entry in by_precision.items():
            if entry.get("file") == file_name:
                return precision
    return None


def stage_of_engine_name(file_name: str) -> str | None:
    """'map.plan' -> 'map' (the engine of that stage, whichever precision was built); else None."""
    stem, dot, suffix = file_name.rpartition(".")
    return stem if dot and f".{suffix}" in ENGINE_SUFFIXES and stem in GRAPHS else None


def resolve_engine_precision(manifest: Manifest, file_name: str, precision: str | None) -> str | None:
    """The precision psf-infer runs for `--engine FILE` (None when FILE names no engine).

    `map.fp16.plan` is the engine recorded under that name. `map.plan` (how users name the TensorRT
    path) is "the engine of this stage that was built": the only precision built, or `precision`;
    several and no choice is refused with the choices, none built with the psf-build command."""
    recorded = engine_precision(manifest, file_name)
    if recorded is not None:
        return recorded
    stage = stage_of_engine_name(file_name)
    if stage is None:
        return None
    built = sorted(manifest.engines.get(stage, {}))
    if precision is not None:
        if precision not in built:
            raise EngineMismatch(no_engine_message(manifest, stage, precision))
        return precision
    if not built:
        raise EngineMismatch(no_engine_message(manifest, stage, None))
    if len(built) > 1:
        raise UsageError(f"{manifest.root / file_name}: {stage} engines were built in {', '.join(built)}; "
                         f"choose one with --precision (or --engine {manifest.root / engine_file(stage, built[0])})")
    return built[0]
