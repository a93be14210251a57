"""Real TensorRT and cuda-bindings releases, importable on a machine without a GPU.

The TensorRT Python bindings (`tensorrt-cuNN-bindings`, ~1.2 MB wheels) link three native libraries
(libnvinfer, libnvinfer_plugin, libnvonnxparser). Stub shared objects that export the module's undefined
C entry points (listed by `nm -D --undefined-only`, each returning 0) let the module import, and then
every class, enum and pybind11 signature of that release can be read. Nothing that needs a real builder
or runtime may be called: the stubs return null. cuda-bindings import as they are; without a driver
their calls return error tuples.

Wheels are downloaded once (`pip download --no-deps`) into ~/.cache/psf-trt-wheels (or
$PSF_TRT_WHEELS) and unpacked there; a later run needs no network.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TENSORRT = (("tensorrt-cu12-bindings", "10.3.0"), ("tensorrt-cu12-bindings", "10.13.3.9"),
            ("tensorrt-cu13-bindings", "11.4.0.106"))
CUDA_BINDINGS = ("12.9.10", "13.5.0")
PATHFINDER = ("cuda-pathfinder", "1.9.1")  # cuda-bindings' one dependency


class Unavailable(Exception):
    """The wheel is not cached and the registry (or gcc/nm) is not reachable: the test skips with this."""


def cache_dir() -> Path:
    path = Path(os.environ.get("PSF_TRT_WHEELS", Path.home() / ".cache" / "psf-trt-wheels"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def wheel(name: str, version: str) -> Path:
    """The cached wheel of name==version for this Python, downloaded on first use."""
    stem = name.replace("-", "_")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"

    def found():
        return [w for w in cache_dir().glob(f"{stem}-{version}-*.whl") if tag in w.name or "py3-none" in w.name]

    if not found():
        try:
            result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                                     "-d", str(cache_dir()), f"{name}=={version}"], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(f"downloading {name}=={version} took over 300 s (registry unreachable?)") from exc
        if result.returncode != 0 or not found():
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise Unavailable(f"cannot download {name}=={version} (registry unreachable?): {tail[0]}")
    return found()[0]


def _unpack(whl: Path, into: Path, finish=None) -> Path:
    """Unpack `whl` to `into` once; built in a temporary folder and renamed, so parallel runs never see
    a half-made folder. `finish(folder)` completes it before the rename (the stub libraries)."""
    if into.is_dir():
        return into
    into.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=into.parent, prefix=f".{into.name}-"))
    try:
        zipfile.ZipFile(whl).extractall(work)
        if finish is not None:
            finish(work)
        os.replace(work, into)
    except OSError:
        if not into.is_dir():  # another run finished first: theirs is as good as ours
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return into


def _undefined_entry_points(module: Path) -> list[str]:
    """The module's undefined, unversioned C symbols that this process cannot already resolve: what the
    TensorRT libraries would have provided."""
    listing = subprocess.run(["nm", "-D", "--undefined-only", str(module)], capture_output=True, text=True, check=True).stdout
    names = [parts[1] for parts in (line.split() for line in listing.splitlines())
             if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1]]
    process = ctypes.CDLL(None)
    return sorted(n for n in names if not hasattr(process, n))


def tensorrt_path(name: str, version: str) -> Path:
    """A folder whose `tensorrt_bindings` package imports here (stub native libraries beside the module)."""
    for tool in ("gcc", "nm", "readelf"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed (needed to build the stub TensorRT libraries)")
    return _unpack(wheel(name, version), cache_dir() / "unpacked" / f"{name}-{version}", _build_stubs)


def _build_stubs(root: Path) -> None:
    package = root / "tensorrt_bindings"
    module = next(package.glob("tensorrt*.so"))
    source = package / "stub.c"
    source.write_text("".join(f"void *{n}(void) {{ return 0; }}\n" for n in _undefined_entry_points(module)))
    needed = subprocess.run(["readelf", "-d", str(module)], capture_output=True, text=True, check=True).stdout
    for lib in (line.split("[")[1].rstrip("]") for line in needed.splitlines() if "(NEEDED)" in line):
        if lib.startswith(("libnvinfer", "libnvonnxparser")):
            subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(package / lib), str(source), f"-Wl,-soname,{lib}"],
                           check=True, capture_output=True)


def cuda_bindings_path(version: str) -> list[Path]:
    """sys.path entries that import cuda.bindings `version` (and its cuda-pathfinder)."""
    root = cache_dir() / "unpacked"
    return [_unpack(wheel("cuda-bindings", version), root / f"cuda-bindings-{version}"),
            _unpack(wheel(*PATHFINDER), root / "-".join(PATHFINDER))]


def run_probe(script: Path, path: list[Path], payload: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter with `path` first on sys.path (and the repository after it)."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, path), str(repo)])}
    return subprocess.run([sys.executable, str(script), *args], input=payload, capture_output=True, text=True,
                          timeout=timeout, env=env)
