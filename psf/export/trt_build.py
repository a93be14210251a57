"""psf-build's job: a bundle's ONNX graphs -> TensorRT engines (.plan), recorded in the manifest.

Precision comes from the ONNX file, the TensorRT 10/11 way: the network is strongly typed (TensorRT 11
has nothing else), fp16 is built from the fp16 ONNX and int8 from the symmetric Q/DQ ONNX that psf-export
wrote; no FP16/INT8 builder flags, no calibrator. Everything up to `build_engine` is plain data and is
tested without a GPU; `Builder.build` makes the few TensorRT calls, in the order TensorRT's samples do,
and checks every value TensorRT returns. fp32 engines are built with TF32 off (TensorRT enables it by
default on Ampere and later, and it differs from fp32 ONNX Runtime by ~1e-3). DLA exists only in
TensorRT 8.x-10.7 (NVIDIA's DLA page), so --dla is refused up front elsewhere. No torch here.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from psf.errors import BundleError, PsfError, UsageError
from psf.manifest import Manifest, sha256_file
from psf.registry import GRAPHS, PRECISIONS
from psf.runtime.engines import engine_file
from psf.runtime.trt import tensorrt_module

log = logging.getLogger(__name__)
MAX_BATCH = 1024  # the exported graphs' batch dimension range


class BuildError(PsfError):
    """TensorRT could not parse or build a graph; the message carries TensorRT's own errors."""


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    batch: tuple[int, int, int] = (1, 16, 64)  # optimization profile: min, opt, max
    stages: tuple[str, ...] = GRAPHS
    dla_core: int | None = None
    workspace_mib: int = 2048
    timing_cache: Path | None = None
    version_compatible: bool = False

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        unknown = [s for s in self.stages if s not in GRAPHS]
        if unknown or not self.stages:
            raise UsageError(f"--stages {','.join(self.stages)!r}; choose from {', '.join(GRAPHS)}")
        if self.workspace_mib < 16:
            raise UsageError(f"--workspace {self.workspace_mib} MiB is too small; give at least 16")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise UsageError(f"--dla {self.dla_core}: DLA cores are numbered from 0 (AGX Orin has 0 and 1)")
            if self.precision == "fp32":
                raise UsageError("--dla runs fp16 or int8 only; add --precision fp16 (or int8)")
            if len(set(self.batch)) != 1:
                raise UsageError(f"--dla needs fixed shapes; give one batch size, e.g. --batch {self.batch[1]} "
                                 f"(got {':'.join(map(str, self.batch))})")


def parse_batch(text: str) -> tuple[int, int, int]:
    """'1:16:64' -> (1, 16, 64); '8' -> (8, 8, 8) (a fixed shape, as DLA and CUDA graphs like)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2] <= MAX_BATCH:
        raise UsageError(f"--batch {text!r}: give MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX <= {MAX_BATCH}, or one size")
    return tuple(parts)


@dataclass(frozen=True)
class BuildJob:
    """One engine to build: which ONNX (and its hash), which file to write, the input's profile."""

    stage: str
    onnx: Path
    onnx_sha256: str
    engine: Path
    input_name: str
    profile: dict[str, list[int]] = field(default_factory=dict)  # min / opt / max full shapes


def plan_builds(manifest: Manifest, options: BuildOptions) -> list[BuildJob]:
    """The engines `options` asks for, each from the ONNX variant of its precision (checked to exist)."""
    options.check()
    variant = options.precision  # TensorRT takes the symmetric int8 file, never int8-cpu
    jobs = []
    for stage in options.stages:
        source = manifest.stage_file(stage, variant)  # BundleError with the psf-export command if missing
        path = Path(manifest.root) / source.file
        if not path.is_file():
            raise BundleError(f"{path} is missing; re-export with: psf-export MODEL.pt -o {manifest.root}")
        actual = sha256_file(path)
        if actual != source.sha256:
            raise BundleError(f"{path}: sha256 {actual[:12]}... does not match the manifest; re-export the bundle")
        item = [int(d) for d in source.inputs[0].shape[1:]]
        profile = {name: [n, *item] for name, n in zip(("min", "opt", "max"), options.batch)}
        jobs.append(BuildJob(stage, path, actual, Path(manifest.root) / engine_file(stage, options.precision),
                             source.inputs[0].name, profile))
    return jobs


def network_flags(trt) -> int:
    """Strongly typed on TensorRT 10 (a flag); TensorRT 11 builds nothing else (the flag is kept there,
    deprecated and ignored, so it is not passed)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    major = int(trt.__version__.split(".")[0])
    return 1 << int(flag) if flag is not None and major < 11 else 0


DLA_NOTE = "DLA is in TensorRT 8.x to 10.7 (JetPack 5 and 6), not in 10.8-10.x nor in 11.0-11.4.0"


def dla_available(version: str) -> bool | None:
    """Does this TensorRT release build for DLA? None for releases after 11.4.0 (not known here: tried)."""
    major, minor, patch = ([int(p) for p in version.split(".")[:3]] + [0, 0])[:3]
    if major < 10 or (major == 10 and minor <= 7):
        return True
    if major == 10 or (major == 11 and (minor, patch) <= (4, 0)):
        return False
    return None


def check_dla(version: str, dla_core: int | None) -> None:
    """Refuse --dla before any build on a TensorRT without DLA (the build would fail, and say less)."""
    if dla_core is not None and dla_available(version) is False:
        raise UsageError(f"--dla {dla_core}: TensorRT {version} has no DLA support ({DLA_NOTE}); build on the "
                         "Jetson's own TensorRT (JetPack 6: 10.3) or drop --dla")


def build_failure(onnx: Path, stage: str, version: str, dla_core: int | None) -> str:
    """What a failed build_serialized_network means, by what was asked for."""
    head = f"{onnx}: TensorRT {version} failed to build the {stage} engine (its log above says why)"
    if dla_core is not None:
        return (f"{head}; DLA runs fp16/int8 layers with fixed shapes and limited Resize/Concat ({DLA_NOTE}); "
                "layers DLA cannot run fall back to the GPU, so check the log for the layer it names")
    return f"{head}; try a larger --workspace or another --batch"


def io_dtype_name(trt, network) -> str:
    """The numpy name of the network's input dtype (what Triton's config for the engine must declare)."""
    import numpy as np

    return np.dtype(trt.nptype(network.get_input(0).dtype)).name


@dataclass(frozen=True)
class BuiltEngine:
    plan: bytes
    io_dtype: str


class Builder:
    """One TensorRT builder (and timing cache) for all engines of a psf-build run."""

    def __init__(self, options: BuildOptions):
        self.trt = tensorrt_module()
        check_dla(self.trt.__version__, options.dla_core)
        self.options = options
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.builder = self.trt.Builder(self.logger)
        self.cache = None

    def build(self, job: BuildJob) -> BuiltEngine:
        trt, options = self.trt, self.options
        network = self.builder.create_network(network_flags(trt))
        parser = trt.OnnxParser(network, self.logger)
        # The path lets TensorRT find weights stored beside the graph (ONNX external data).
        if not parser.parse(job.onnx.read_bytes(), str(job.onnx)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BuildError(f"{job.onnx}: TensorRT {trt.__version__} cannot parse it: {errors}")
        config = self.builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
        if options.precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 engines are verified to 1e-4
        profile = self.builder.create_optimization_profile()
        profile.set_shape(job.input_name, job.profile["min"], job.profile["opt"], job.profile["max"])
        if config.add_optimization_profile(profile) < 0:
            raise BuildError(f"{job.onnx}: TensorRT refused the profile {job.profile} for input {job.input_name!r}")
        self._attach_timing_cache(config)
        if options.version_compatible:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if options.dla_core is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = options.dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        plan = self.builder.build_serialized_network(network, config)
        if plan is None:
            raise BuildError(build_failure(job.onnx, job.stage, trt.__version__, options.dla_core))
        self.cache = config.get_timing_cache()
        return BuiltEngine(bytes(plan), io_dtype_name(trt, network))

    def _attach_timing_cache(self, config) -> None:
        """The run's timing cache (seeded from --timing-cache); one made on another GPU or TensorRT is
        refused by TensorRT (set_timing_cache returns False): then start empty and say so."""
        if self.cache is None:
            path = self.options.timing_cache
            seed = path.read_bytes() if path is not None and path.is_file() else b""
            self.cache = config.create_timing_cache(seed)
        if not config.set_timing_cache(self.cache, False):
            log.warning("timing cache %s was made on another GPU or TensorRT; starting an empty one",
                        self.options.timing_cache)
            self.cache = config.create_timing_cache(b"")
            if not config.set_timing_cache(self.cache, False):
                raise BuildError(f"TensorRT {self.trt.__version__} refused an empty timing cache")

    def save_timing_cache(self) -> None:
        if self.options.timing_cache is not None and self.cache is not None:
            from psf.io.atomic import write_bytes_atomic

            write_bytes_atomic(self.options.timing_cache, bytes(self.cache.serialize()))


def engine_entry(job: BuildJob, options: BuildOptions, plan_path: Path, device: dict, tensorrt_version: str,
                 io_dtype: str = "float32") -> dict:
    """What the manifest records of an engine: enough to refuse a mismatch and to say how to rebuild."""
    return {
        "file": plan_path.name,
        "sha256": sha256_file(plan_path),
        "onnx": job.onnx.name,
        "onnx_sha256": job.onnx_sha256,
        "precision": options.precision,
        "batch": list(options.batch),
        "tensorrt": tensorrt_version,
        "gpu": device["name"],
        "compute_capability": device["compute_capability"],
        "dla_core": options.dla_core,
        "version_compatible": options.version_compatible,
        "io_dtype": io_dtype,  # the network's input dtype, as TensorRT parsed it
        "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def build_bundle(manifest: Manifest, options: BuildOptions, on_built=None) -> list[dict]:
    """Build every engine `options` asks for, write each atomically, record it in the manifest (saved)."""
    from psf.io.atomic import write_bytes_atomic
    from psf.runtime.cuda import cuda_api

    jobs = plan_builds(manifest, options)
    compiler = Builder(options)
    device = cuda_api().device_info(0)
    entries = []
    for job in jobs:
        started = dt.datetime.now()
        built = compiler.build(job)
        write_bytes_atomic(job.engine, built.plan)
        entry = engine_entry(job, options, job.engine, device, compiler.trt.__version__, built.io_dtype)
        entry["build_s"] = round((dt.datetime.now() - started).total_seconds(), 1)
        manifest.engines.setdefault(job.stage, {})[options.precision] = entry
        manifest.save(manifest.root)  # after each engine: an interrupted run keeps what it finished
        entries.append(entry)
        if on_built:
            on_built(job, entry)
    compiler.save_timing_cache()
    return entries

