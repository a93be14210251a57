"""Start and stop `tritonserver` (the binary the nvidia-pytriton wheel ships) on a private model repository.

psf writes the repository itself rather than through PyTriton's proxy, because hostile clients found
four things that proxy does not let us change: a bad request failed every request batched with it, every
failure sent a traceback with server paths to the client, the model config carried the workspace path,
and the token for Triton's restricted APIs was on tritonserver's command line (readable by any local
user), where it unlocked loading models (arbitrary code). Here:

- each model is psf.serve.triton_model (requests checked one by one, one-line errors);
- the repository lives in a fresh 0700 temporary folder; a model folder links to the bundle, and the
  config holds only names, shapes and options;
- models load at startup and never after (--model-control-mode=none), so the model-repository API
  cannot load anything; the other restricted APIs (shared memory, statistics, trace, logging) are closed
  with a header value that HTTP and gRPC cannot carry (it contains a line feed): no token exists, so
  none can be read from the process list;
- inference over HTTP is closed unless --http-infer (Triton 2.51's JSON parser allocates the size a request
  declares: one small request can abort the server); HTTP still answers health and metadata;
- /v2/health/ready answers 200 only once every model is loaded (--strict-readiness);
- tritonserver and its backend stubs run in their own process group, which stop() ends as a whole.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from psf.errors import MissingDependency, PsfError
from psf.serve.schema import WireSchema

TRITON_TYPES = {"fp16": "TYPE_FP16", "fp32": "TYPE_FP32"}
RESTRICTED_APIS = "shared-memory,model-repository,statistics,trace,logging"
UNSENDABLE = "closed\nby-psf"  # a line feed: no HTTP header or gRPC metadata value can carry it
MODEL_PY = "from psf.serve.triton_model import TritonPythonModel  # noqa: F401  (written by psf-serve)\n"
STOP_GRACE_S = 8.0  # Triton's own --exit-timeout-secs is 5; then the whole group is killed


def distribution() -> dict[str, Path]:
    """tritonserver, the Python backend, this interpreter's backend stub and the libraries, from the PyTriton wheel."""
    try:
        import pytriton
    except ImportError as exc:
        raise MissingDependency("PyTriton's tritonserver (the embedded Triton server)", "serve") from exc
    root = Path(pytriton.__file__).parent / "tritonserver"
    libs = root.parent.parent / "nvidia_pytriton.libs"
    files = {"binary": root / "bin" / "tritonserver", "backend": root / "backends" / "python",
             "stub": root / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / "triton_python_backend_stub",
             "libs": libs if libs.is_dir() else root / "external_libs"}
    missing = [name for name, path in files.items() if not path.exists()]
    if missing:
        raise MissingDependency(f"tritonserver's {', '.join(missing)} for Python {sys.version_info[0]}.{sys.version_info[1]}", "serve")
    return files


def config_pbtxt(schema: WireSchema, wire: str, options) -> str:
    """Text-format ModelConfig of one map model: names, shapes, batching, instances, psf's own options."""
    dims = ", ".join(str(d) for d in schema.input_shape), ", ".join(str(d) for d in schema.output_shape)
    parameters = {"psf_wire": wire, "psf_backend": options.backend, "psf_precision": options.precision,
                  "psf_threads": str(options.threads or 0), "psf_debug": "1" if options.debug else "0"}
    lines = [f'name: "{schema.model_name}"', 'backend: "python"', f"max_batch_size: {options.max_batch}",
             f'input [ {{ name: "{schema.input_name}" data_type: {TRITON_TYPES[wire]} dims: [ {dims[0]} ] }} ]',
             f'output [ {{ name: "{schema.output_name}" data_type: {TRITON_TYPES[wire]} dims: [ {dims[1]} ] }} ]',
             f"instance_group [ {{ count: {options.instances} kind: KIND_CPU }} ]"]
    if options.batching:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}")
    lines += [f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}' for key, value in parameters.items()]
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """In the child: SIGTERM when psf-serve dies, even by SIGKILL, so no tritonserver outlives it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonProcess:
    """One tritonserver serving `schemas` (wire name -> WireSchema) of `bundle` with ServeOptions `options`."""

    def __init__(self, bundle: Path, schemas: dict[str, WireSchema], options, http_address: str):
        self.bundle, self.schemas, self.options, self.http_address = Path(bundle).resolve(), schemas, options, http_address
        self.workspace: Path | None = None
        self.process: subprocess.Popen | None = None

    # -- files -----------------------------------------------------------------------------------
    def _prepare(self) -> None:
        files = distribution()
        self.workspace = Path(tempfile.mkdtemp(prefix="psf-serve-"))  # mode 0700: this user only
        backend = self.workspace / "backends" / "python"
        shutil.copytree(files["backend"], backend, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(files["stub"], backend / "triton_python_backend_stub")
        for wire, schema in self.schemas.items():
            version = self.workspace / "models" / schema.model_name / "1"
            version.mkdir(parents=True)
            (version / "model.py").write_text(MODEL_PY)
            (version / "bundle").symlink_to(self.bundle, target_is_directory=True)
            (version.parent / "config.pbtxt").write_text(config_pbtxt(schema, wire, self.options))
        self._files = files

    def command(self) -> list[str]:
        o, ws = self.options, self.workspace
        closed = f"{RESTRICTED_APIS}:psf-closed={UNSENDABLE}"
        args = [str(self._files["binary"]), f"--model-repository={ws / 'models'}", "--model-control-mode=none",
                "--strict-readiness=true", "--exit-on-error=true", "--disable-auto-complete-config",
                f"--backend-directory={ws / 'backends'}",
                f"--backend-config=python,shm-region-prefix-name=psf{os.getpid()}-{secrets.token_hex(4)}",
                "--backend-config=python,shm-default-byte-size=4194304", "--backend-config=python,shm-growth-byte-size=1048576",
                f"--log-verbose={1 if o.debug else 0}", "--exit-timeout-secs=5",
                "--allow-grpc=true", f"--grpc-address={o.address}", f"--grpc-port={o.grpc_port}",
                f"--grpc-restricted-protocol={closed}",
                # Stalled gRPC clients: a silent connection is pinged after 60 s and dropped if it does not answer
                # in 20 s; every connection is closed (gracefully: clients reconnect) after 5 minutes, and a
                # request still uploading 30 s later is cut off.
                "--grpc-keepalive-time=60000", "--grpc-keepalive-timeout=20000",
                "--grpc-max-connection-age=300000", "--grpc-max-connection-age-grace=30000",
                f"--allow-http={'true' if o.http_port else 'false'}", "--allow-sagemaker=false", "--allow-vertex-ai=false"]
        if o.http_port:
            # Triton 2.51's HTTP JSON parser allocates (and zeroes) the byte size a request *declares* before
            # checking it against the data or the model: a 100-byte request can make it allocate gigabytes,
            # or abort the whole server (std::bad_alloc). So HTTP inference is closed unless --http-infer.
            http_closed = closed if o.http_infer else f"inference,{closed}"
            args += [f"--http-address={self.http_address}", f"--http-port={o.http_port}", f"--http-restricted-api={http_closed}"]
        args += [f"--allow-metrics={'true' if o.metrics_port else 'false'}"]
        if o.metrics_port:
            args += [f"--metrics-address={self.http_address}", f"--metrics-port={o.metrics_port}"]
        if o.tls:
            args += ["--grpc-use-ssl=true", f"--grpc-server-cert={o.tls.cert}", f"--grpc-server-key={o.tls.key}",
                     f"--grpc-use-ssl-mutual={'true' if o.tls.mutual else 'false'}"]
            if o.tls.ca:
                args.append(f"--grpc-root-cert={o.tls.ca}")
        if o.log_file:
            args.append(f"--log-file={Path(o.log_file).resolve()}")
        return args

    def _environment(self) -> dict[str, str]:
        """The backend stub embeds this interpreter: its libpython, and this environment's packages (psf included)."""
        env = dict(os.environ)
        libpython = sysconfig.get_config_var("LIBDIR")
        paths = [p for p in (libpython, str(self._files["libs"]), env.get("LD_LIBRARY_PATH", "")) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
        env["PATH"] = os.pathsep.join((str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")))
        if self.options.threads:
            env["OMP_NUM_THREADS"] = str(self.options.threads)
        return env

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, timeout_s: float = 300.0) -> None:
        self._prepare()
        self.process = subprocess.Popen(self.command(), env=self._environment(), stdin=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        try:
            while not self.ready():
                if self.process.poll() is not None:
                    raise PsfError(f"Triton exited with code {self.process.returncode} while loading the map models; "
                                   f"its log above says why")
                if time.monotonic() > deadline:
                    raise PsfError(f"Triton did not load the map models within {timeout_s:.0f} s; its log above says why")
                time.sleep(0.2)
        except BaseException:  # Ctrl-C or SIGTERM during startup too
            self.stop()
            raise

    def ready(self) -> bool:
        """Every model loaded: /v2/health/ready (strict readiness); without HTTP, the gRPC port open (Triton
        opens its endpoints only after loading every model, with --model-control-mode=none)."""
        o = self.options
        try:
            if o.http_port:
                host = "127.0.0.1" if self.http_address in ("0.0.0.0", "") else self.http_address
                with urllib.request.urlopen(f"http://{host}:{o.http_port}/v2/health/ready", timeout=1) as answer:
                    return answer.status == 200
            host = "127.0.0.1" if o.address in ("0.0.0.0", "") else o.address
            with socket.create_connection((host, o.grpc_port), timeout=1):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGINT to tritonserver (it drains in-flight requests for up to 5 s), then SIGKILL to its whole
        group, backend stubs included; the private repository is removed."""
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + STOP_GRACE_S
            # Wait without reaping: while tritonserver is an unreaped zombie its process group id cannot be
            # reused, so the killpg below reaches its stubs and nothing else.
            while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever of its group is left (backend stubs)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        if self.workspace is not None:
            shutil.rmtree(self.workspace, ignore_errors=True)
            self.workspace = None
