"""TensorRT GPU check: everything psf's TensorRT path does, on a real GPU, in one command (< 10 minutes).

    python -m benchmarks.trt_gpu_check [--bundle demo/bundle] [--json trt-check.json] [--budget-s 540]

Needs `pip install -e '.[trt-cu12]'` (or trt-cu13) on a machine with an NVIDIA GPU; without --bundle it
trains and exports a tiny bundle first (needs the `train` extra too, ~1-2 min on a GPU). What it does:
1. cuda-bindings layer (psf.runtime.cuda): device info, host->device->device->host copies on a
   non-default stream, a captured CUDA graph replayed with new data, a capture that fails (and the stream
   still works after it), two threads at once on their own streams.
2. pycuda fallback, where pycuda is installed: the same copies, and two threads at once (fault 7: the
   context is made current in each thread).
3. TensorRT, where it imports: for fp32, fp16 and int8 build every engine (timing cache on), check each
   against ONNX Runtime (what `psf-build --verify` runs), run 70 slices at max batch 64 (64 + 6) with
   CUDA graphs on and off and again at 6 and 70 (fault 4), two threads on one runner, the fallback when
   TensorRT declines a capture (fault 1; simulated at execute_async_v3's return value), a rebuild that
   reuses the timing cache, and batch-1 / batch-64 latency with graphs on and off.
Sections 1-2 run on any GPU machine; 3 is skipped (with the reason) where TensorRT is missing. Prints one
table (check, result, detail) and, with --json, writes every row. Nothing is hidden: a failing step is a
FAIL row with its error, and the script goes on.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

ROWS: list[dict] = []


def row(section: str, check: str, ok, detail="") -> None:
    """ok: True (pass), False (FAIL), None (measured / skipped: no verdict)."""
    ROWS.append({"section": section, "check": check, "result": {True: "ok", False: "FAIL", None: "-"}[ok],
                 "detail": detail if isinstance(detail, str) else json.dumps(detail)})
    print(f"{ROWS[-1]['result']:4s} {section:10s} {check}: {ROWS[-1]['detail']}", flush=True)


def guarded(section: str, check: str):
    """Run a check; an exception becomes a FAIL row with its message (the script goes on)."""

    def wrap(fn):
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                row(section, check, False, f"{type(exc).__name__}: {exc}"[:300])
                traceback.print_exc()
                return None

        return run

    return wrap


# ---- 1 and 2: the CUDA layer, for whichever binding `api` is -------------------------------------------------


def roundtrip(api, values: np.ndarray, stream=None) -> bool:
    from psf.runtime.cuda import DeviceBuffer, PinnedArray, Stream

    own = stream is None
    stream = stream or Stream(api)
    src, dst = PinnedArray(api, values.shape, values.dtype), PinnedArray(api, values.shape, values.dtype)
    a, b = DeviceBuffer(api, values.nbytes), DeviceBuffer(api, values.nbytes)
    src.array[:] = values
    api.to_device(a.ptr, src.array, stream.raw)
    api.device_copy(b.ptr, a.ptr, values.nbytes, stream.raw)
    api.to_host(dst.array, b.ptr, stream.raw)
    stream.synchronize()
    equal = bool(np.array_equal(src.array, dst.array))
    for item in (src, dst, a, b, *([stream] if own else [])):
        item.close()
    return equal


def graphs(api, section: str) -> None:
    from psf.runtime.cuda import CudaError, CudaGraph, DeviceBuffer, PinnedArray, Stream

    stream, n = Stream(api), 1 << 18
    src, dst, a = PinnedArray(api, (n,), np.float32), PinnedArray(api, (n,), np.float32), DeviceBuffer(api, n * 4)
    graph = CudaGraph.capture(api, stream, lambda: (api.to_device(a.ptr, src.array, stream.raw),
                                                    api.to_host(dst.array, a.ptr, stream.raw)))
    good = []
    for value in (7.0, -2.5):
        src.array[:] = value
        graph.launch(stream)
        stream.synchronize()
        good.append(bool(np.all(dst.array == value)))
    graph.close()
    row(section, "graph capture and replay with new data", all(good), good)
    failures = 0
    for _ in range(20):  # a capture that fails must free what it recorded and leave the stream usable
        try:
            CudaGraph.capture(api, stream, stream.synchronize)
        except CudaError:
            failures += 1
    row(section, "failed capture raises CudaError (20x), stream works after", failures == 20 and roundtrip(api, np.arange(1000, dtype=np.float32), stream),
        f"{failures}/20 raised")
    for item in (src, dst, a, stream):
        item.close()


def threads(api, section: str, count: int = 2, rounds: int = 30) -> None:
    """`count` threads at once, each making the CUDA context current and copying its own values."""
    barrier, errors, results = threading.Barrier(count), [], []

    def work(index: int) -> None:
        try:
            api.make_current()
            barrier.wait()
            results.extend(roundtrip(api, np.full(1 << 16, index + r, np.float32)) for r in range(rounds))
        except Exception as exc:
            errors.append(f"thread {index}: {type(exc).__name__}: {exc}"[:200])

    workers = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    row(section, f"{count} threads at once, {rounds} round trips each", not errors and all(results) and len(results) == count * rounds,
        "; ".join(errors) or f"{sum(results)}/{count * rounds} equal")


def cuda_layer(api, section: str) -> None:
    row(section, "device", None, {**api.device_info(0), "binding": api.name, "version": api.version,
                                  "driver": api.driver_version()})
    row(section, "host->device->device->host round trip (4 MiB)",
        roundtrip(api, np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)))
    if api.supports_graphs:
        guarded(section, "graphs")(graphs)(api, section)
    guarded(section, "threads")(threads)(api, section)


def check_cuda_bindings() -> None:
    from psf.runtime.cuda import CudaBindings, CudaError

    try:
        api = CudaBindings()
        api.device_count()
    except ImportError as exc:
        return row("cuda", "cuda-bindings", None, f"skipped: not installed ({exc})")
    except CudaError as exc:
        return row("cuda", "cuda-bindings", None, f"skipped: no usable GPU ({exc})")
    guarded("cuda", "cuda-bindings layer")(cuda_layer)(api, "cuda")


def check_pycuda() -> None:
    from psf.runtime.cuda import PyCuda

    try:
        api = PyCuda()
    except ImportError as exc:
        return row("pycuda", "pycuda", None, f"skipped: not installed ({exc})")
    except Exception as exc:
        return row("pycuda", "pycuda", None, f"skipped: CUDA did not start ({exc})")
    guarded("pycuda", "pycuda layer")(cuda_layer)(api, "pycuda")


# ---- 3: TensorRT ----------------------------------------------------------------------------------------------


def tiny_bundle(work: Path) -> Path:
    """Train and export a tiny bundle (the tests' model sizes) with fp32, fp16 and int8 ONNX."""
    from psf.data.mni152 import build_mni152
    from psf.export.calibration import calibration_slices
    from psf.export.onnx import export_bundle
    from psf.models.config import ModelConfig
    from psf.pipeline.preprocess import DEFAULT_NORMALIZATION
    from psf.train.run import TrainOptions, run_training

    data, model = work / "mni152", work / "model.pt"
    build_mni152(data)
    run_training(TrainOptions(data=data, out=model, model=ModelConfig(client_width=8, map_width=8, image_latent=4, mask_latent=3),
                              stage_epochs={"image_ae": 6, "mask_ae": 4, "mapping": 20}, views=3, seed=0, quiet=True,
                              device="auto"))
    calib = calibration_slices(data / "train" / "images", 256, DEFAULT_NORMALIZATION, 32)
    export_bundle(model, work / "bundle", precisions=("fp32", "fp16", "int8"), calibration=calib, calibration_source="train images")
    return work / "bundle"


def latency(runner, images: np.ndarray, iters: int = 100) -> float:
    runner.infer({"image": images})
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        runner.infer({"image": images})
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e3, 3)


def runner_checks(manifest, precision: str, images: np.ndarray) -> None:
    from psf.runtime.trt import TrtRunner, refused_enqueue

    s = f"trt {precision}"
    with TrtRunner(manifest, ("pipeline",), precision, graphs=False) as plain:  # references at the same batch sizes
        reference = plain.infer({"image": images})["probs"]
        small = plain.infer({"image": images[:6]})["probs"]
        halves_ref = np.concatenate([plain.infer({"image": images[:35]})["probs"], plain.infer({"image": images[35:]})["probs"]])
    with TrtRunner(manifest, ("pipeline",), precision, graphs=True) as graphed:
        first = graphed.infer({"image": images})["probs"]  # 64 + 6: two sizes, two graphs, two contexts
        six = graphed.infer({"image": images[:6]})["probs"]
        again = graphed.infer({"image": images})["probs"]
        sizes, error = sorted(graphed.graphs), graphed.graph_error
    diffs = [float(np.abs(x - y).max()) for x, y in ((first, reference), (six, small), (again, reference))]
    row(s, "70 slices at max batch 64, then 6, then 70: graphs == plain", error is None and sizes == [6, 64] and max(diffs) <= 1e-5,
        {"graphs": sizes, "graph_error": error, "max_abs_diff": diffs})

    with TrtRunner(manifest, ("pipeline",), precision) as shared:
        halves, outs, errors = (images[:35], images[35:]), [None, None], []

        def work(i):
            try:
                for _ in range(5):
                    outs[i] = shared.infer({"image": halves[i]})["probs"]
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

        workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        ok = not errors and all(o is not None for o in outs) and float(np.abs(np.concatenate(outs) - halves_ref).max()) <= 1e-5
        row(s, "two threads at once on one runner", ok, "; ".join(errors) or "outputs equal the single-thread run")

    refusing = TrtRunner(manifest, ("pipeline",), precision, graphs=True).activate()
    try:
        engine = refusing.engines[0]
        real = engine.enqueue

        def enqueue(batch, stream, key, address=None, capturing=False):
            if capturing:  # what TensorRT's execute_async_v3 returning False inside a capture becomes
                raise refused_enqueue(engine.label, capturing=True)
            return real(batch, stream, key, address, capturing)

        engine.enqueue = enqueue
        out1 = refusing.infer({"image": images})["probs"]
        out2 = refusing.infer({"image": images})["probs"]
        ok = (refusing.graph_error is not None and not refusing.graphs and float(np.abs(out1 - reference).max()) <= 1e-5
              and float(np.abs(out2 - reference).max()) <= 1e-5)
        row(s, "capture declined -> plain enqueue, same outputs", ok, {"graph_error": refusing.graph_error})
    finally:
        refusing.deactivate()

    timings = {}
    for graphs_on in (False, True):
        with TrtRunner(manifest, ("pipeline",), precision, graphs=graphs_on) as r:
            for batch in (1, 64):
                timings[f"batch{batch}_{'graph' if graphs_on else 'plain'}_p50_ms"] = latency(r, images[:batch])
    row(s, "latency host->host (pipeline engine)", None, timings)


def tensorrt_checks(bundle: Path | None, deadline: float) -> None:
    try:
        import tensorrt
    except ImportError as exc:
        return row("trt", "TensorRT", None, f"skipped: not installed ({exc})")
    from psf.export.calibration import template_slices
    from psf.export.trt_build import BuildOptions, build_bundle
    from psf.export.trt_verify import verify_engines
    from psf.manifest import load_manifest
    from psf.registry import GRAPHS

    row("trt", "TensorRT", None, tensorrt.__version__)
    work = Path(tempfile.mkdtemp(prefix="psf-trt-check-"))
    try:
        if bundle is None:
            started = time.time()
            bundle = guarded("trt", "make a tiny bundle")(tiny_bundle)(work)
            if bundle is None:
                return
            row("trt", "tiny bundle trained and exported", None, f"{time.time() - started:.0f} s")
        copy = work / "engines"
        shutil.copytree(bundle, copy)
        manifest = load_manifest(copy)
        images = template_slices(manifest.image_size, manifest.normalization, count=70)
        cache = work / "timing.cache"
        for precision in ("fp32", "fp16", "int8"):
            if time.time() > deadline:
                row(f"trt {precision}", "build", None, "skipped: time budget")
                continue
            s = f"trt {precision}"
            entries = guarded(s, "build")(build_bundle)(manifest, BuildOptions(precision=precision, batch=(1, 16, 64), timing_cache=cache))
            if not entries:
                continue
            row(s, "build 4 engines", True, {e["file"]: e["build_s"] for e in entries} | {"io_dtype": entries[0]["io_dtype"]})
            checks = guarded(s, "verify")(verify_engines)(manifest, precision, GRAPHS, images[:32])
            for check in checks or []:
                row(s, f"verify {check.stage} vs ONNX Runtime", not check.failures(),
                    {"max_abs": check.max_abs, "median_abs": check.median_abs, "dice_change": check.dice_change,
                     "failures": check.failures()})
            guarded(s, "runner")(runner_checks)(manifest, precision, images)
        if cache.is_file() and time.time() < deadline:
            first = manifest.engines["map"]["fp16"]["build_s"]
            again = guarded("trt", "timing cache reuse")(build_bundle)(
                manifest, BuildOptions(precision="fp16", stages=("map",), batch=(1, 16, 64), timing_cache=cache))
            if again:
                row("trt", "rebuild map fp16 with the saved timing cache", None, f"{again[0]['build_s']} s (first build {first} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table() -> str:
    widths = [max(len(r[k]) for r in ROWS) for k in ("section", "check", "result")]
    lines = [f"{'section':{widths[0]}}  {'check':{widths[1]}}  {'res':{widths[2]}}  detail"]
    lines += [f"{r['section']:{widths[0]}}  {r['check']:{widths[1]}}  {r['result']:{widths[2]}}  {r['detail']}" for r in ROWS]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a bundle with fp32, fp16 and int8 ONNX (default: train a tiny one)")
    parser.add_argument("--json", type=Path, help="write every row (and the host) here")
    parser.add_argument("--budget-s", type=float, default=540, help="skip the remaining TensorRT precisions after this")
    args = parser.parse_args(argv)
    deadline = time.time() + args.budget_s
    row("host", "machine", None, f"{platform.node()} {platform.machine()} Python {platform.python_version()}")
    check_cuda_bindings()
    check_pycuda()
    tensorrt_checks(args.bundle, deadline)
    print("\n" + table())
    if args.json:
        from psf.bench.provenance import write_run_json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": ROWS}, indent=2) + "\n")
        write_run_json(args.json.parent)
    return 1 if any(r["result"] == "FAIL" for r in ROWS) else 0


if __name__ == "__main__":
    raise SystemExit(main())
