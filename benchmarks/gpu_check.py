"""GPU check: runs psf.runtime.cuda for real, then times the torch path of the three stages on the GPU.

    python -m benchmarks.gpu_check --checkpoint demo/model.pt [--slices test_slices.npz] [--json out.json]

(psf installed, e.g. `pip install -e .[train]`. The TensorRT path itself, with the pycuda fallback and
threads, is checked by benchmarks/trt_gpu_check.py.)

Part 1, the CUDA layer TensorRT's runtime uses (psf.runtime.cuda, no torch): device info, device and
pinned allocations, host->device->device->host copies on one non-default stream (checked byte for
byte), graph capture of copies and a kernel (a torch kernel enqueued on our stream), replay with new
inputs, and the fallback when capture fails.
Part 2, torch on the GPU, encoder -> map -> decoder (softmax) as one module, at batch 1, 16 and 256:
eager fp32, eager fp16, CUDA graphs (fp32, fp16, fp16 channels-last), torch.compile (fp16; and with
CUDA graphs).
Latency = device time from the input already on the GPU to the probabilities on the GPU, CUDA events
around each call, p50/p99 over many calls; graphs include the copy into their static input. With
--slices (images + labels of real test slices), also the Dice of fp32 and fp16 against the labels.
Prints one JSON report; nothing here is asserted, the figures are what was measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np


BATCHES = (1, 16, 256)


def check_cuda_layer() -> dict:
    """Exercise psf.runtime.cuda: every call here is one the TensorRT runner makes."""
    from psf.runtime.cuda import CudaError, CudaGraph, DeviceBuffer, PinnedArray, Stream, cuda_api

    api = cuda_api()
    report = {"binding": api.name, "devices": api.device_count(), "device": api.device_info(0)}
    api.set_device(0)
    stream = Stream(api)
    n = 1 << 20
    src, dst = PinnedArray(api, (n,), np.float32), PinnedArray(api, (n,), np.float32)
    a, b = DeviceBuffer(api, n * 4), DeviceBuffer(api, n * 4)
    src.array[:] = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    t0 = time.perf_counter()
    api.to_device(a.ptr, src.array, stream.raw)
    api.device_copy(b.ptr, a.ptr, n * 4, stream.raw)
    api.to_host(dst.array, b.ptr, stream.raw)
    stream.synchronize()
    report["roundtrip_4MiB_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
    report["roundtrip_equal"] = bool(np.array_equal(src.array, dst.array))

    # A graph of copies only: capture, then replay with new host data.
    dst.array[:] = 0
    graph = CudaGraph.capture(api, stream, lambda: (api.to_device(a.ptr, src.array, stream.raw),
                                                    api.to_host(dst.array, a.ptr, stream.raw)))
    src.array[:] = 7.0
    graph.launch(stream)
    stream.synchronize()
    report["graph_copies_replay_equal"] = bool(np.all(dst.array == 7.0))
    graph.close()

    # A graph with a kernel: torch enqueues y = 2x + 1 on our stream, between our copies.
    report["graph_kernel"] = _graph_with_torch_kernel(api, stream, src, dst, a, b, n)

    # Capture that fails (a synchronize inside a capture is illegal) raises CudaError, and the stream works after.
    try:
        CudaGraph.capture(api, stream, stream.synchronize)
        report["failed_capture_raises"] = False
    except CudaError as exc:
        report["failed_capture_raises"] = True
        report["failed_capture_message"] = str(exc)[:160]
    api.to_device(a.ptr, src.array, stream.raw)
    api.to_host(dst.array, a.ptr, stream.raw)
    stream.synchronize()
    report["stream_ok_after_failed_capture"] = bool(np.array_equal(src.array, dst.array))
    for item in (src, dst, a, b, stream):
        item.close()
    return report


def _graph_with_torch_kernel(api, stream, src, dst, a, b, n) -> dict:
    import torch

    from psf.runtime.cuda import CudaGraph

    x = torch.empty(n, device="cuda")
    y = torch.empty(n, device="cuda")
    torch.cuda.synchronize()
    external = torch.cuda.ExternalStream(stream.handle)

    def enqueue():
        api.device_copy(x.data_ptr(), a.ptr, n * 4, stream.raw)
        with torch.cuda.stream(external):
            torch.mul(x, 2.0, out=y)
            y.add_(1.0)
        api.device_copy(b.ptr, y.data_ptr(), n * 4, stream.raw)
        api.to_host(dst.array, b.ptr, stream.raw)

    try:
        graph = CudaGraph.capture(api, stream, lambda: (api.to_device(a.ptr, src.array, stream.raw), enqueue()))
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    results = []
    for value in (3.0, -1.5):
        src.array[:] = value
        graph.launch(stream)
        stream.synchronize()
        results.append(bool(np.allclose(dst.array, 2 * value + 1)))
    events = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    events[0].record(external)
    for _ in range(100):
        graph.launch(stream)
    events[1].record(external)
    events[1].synchronize()
    graph.close()
    return {"ok": all(results), "replays_correct": results, "replay_4MiB_in_out_ms": round(events[0].elapsed_time(events[1]) / 100, 4)}


def load_pipeline(checkpoint: Path):
    import torch

    from psf.export.graphs import Pipeline
    from psf.models import build_networks
    from psf.models.config import ModelConfig

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    nets = build_networks(ModelConfig.from_dict(ckpt["config"]))
    nets.load_state_dicts(ckpt["state_dicts"])
    return Pipeline(nets.eval()).eval(), ckpt


def time_device(fn, x, iters: int, warmup: int = 20) -> dict:
    """CUDA-event time of each call fn(x), synchronizing after each: latency, not pipelined throughput."""
    import torch

    for _ in range(warmup):
        fn(x)
    torch.cuda.synchronize()
    times = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(iters):
        start.record()
        fn(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    t = np.array(times)
    return {"p50_ms": round(float(np.median(t)), 4), "p99_ms": round(float(np.percentile(t, 99)), 4),
            "slices_per_s": round(x.shape[0] * 1000 / float(np.median(t)), 1)}


def graphed(module, example):
    """torch.cuda.CUDAGraph of module(static_in); call = copy into the static input + replay."""
    import torch

    static_in = example.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            module(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = module(static_in)

    def call(x):
        static_in.copy_(x)
        graph.replay()
        return static_out

    return call


def torch_path(checkpoint: Path, deadline: float) -> dict:
    import torch

    pipe, _ = load_pipeline(checkpoint)
    fp16 = copy.deepcopy(pipe).cuda().half()
    fp16_nhwc = copy.deepcopy(fp16).to(memory_format=torch.channels_last)
    fp32 = pipe.cuda()
    rows = []
    for batch in BATCHES:
        iters = 300 if batch < 256 else 60
        x32 = torch.rand(batch, 1, 256, 256, device="cuda")
        x16 = x32.half()
        with torch.inference_mode():
            variants = {
                "eager fp32": (fp32, x32),
                "eager fp16": (fp16, x16),
                "cuda graph fp32": (graphed(fp32, x32), x32),
                "cuda graph fp16": (graphed(fp16, x16), x16),
                "cuda graph fp16 channels_last": (graphed(fp16_nhwc, x16.contiguous(memory_format=torch.channels_last)),
                                                  x16.contiguous(memory_format=torch.channels_last)),
            }
            for name, (fn, x) in variants.items():
                rows.append({"variant": name, "batch": batch, **time_device(fn, x, iters)})
                print(json.dumps(rows[-1]), flush=True)
        for mode in ("default", "reduce-overhead"):
            if time.time() > deadline:
                rows.append({"variant": f"torch.compile fp16 ({mode})", "batch": batch, "skipped": "time budget"})
                continue
            try:
                torch._dynamo.reset()
                compiled = torch.compile(fp16, mode=mode, dynamic=False)
                t0 = time.time()
                with torch.inference_mode():
                    compiled(x16)
                    compile_s = time.time() - t0
                    row = {"variant": f"torch.compile fp16 ({mode})", "batch": batch, **time_device(compiled, x16, iters),
                           "compile_s": round(compile_s, 1)}
            except Exception as exc:
                row = {"variant": f"torch.compile fp16 ({mode})", "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:200]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"rows": rows, "targets": _targets(rows)}


def _targets(rows: list[dict]) -> dict:
    """The issue's targets, from the best fp16 variant with CUDA graphs (named) against eager fp32."""
    graphed_fp16 = ("cuda graph fp16", "cuda graph fp16 channels_last", "torch.compile fp16 (reduce-overhead)")
    batch1 = [r for r in rows if r["batch"] == 1 and r["variant"] in graphed_fp16 and "p50_ms" in r]
    best = min(batch1, key=lambda r: r["p50_ms"], default=None)
    eager = next((r["p50_ms"] for r in rows if r["variant"] == "eager fp32" and r["batch"] == 1), None)
    best256 = max((r for r in rows if r["batch"] == 256 and "slices_per_s" in r), key=lambda r: r["slices_per_s"], default=None)
    return {
        "batch1_best_graph_fp16": best and {"variant": best["variant"], "p50_ms": best["p50_ms"], "p99_ms": best["p99_ms"]},
        "batch1_target_ms": 0.3, "batch1_met": bool(best and best["p50_ms"] <= 0.3),
        "speedup_vs_eager_fp32": round(eager / best["p50_ms"], 2) if best and eager else None, "speedup_target": 3.0,
        "batch256_best": best256 and {"variant": best256["variant"], "slices_per_s": best256["slices_per_s"]},
        "batch256_target": 20000, "batch256_met": bool(best256 and best256["slices_per_s"] >= 20000),
    }


def accuracy(checkpoint: Path, slices: Path) -> dict:
    """Dice (grey and white matter) of fp32 and fp16 on the GPU against the labels, on real test slices."""
    import torch

    data = np.load(slices)
    images, labels, valid = data["images"], data["labels"], data["valid"]
    pipe, ckpt = load_pipeline(checkpoint)
    out = {}
    with torch.inference_mode():
        for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            model = copy.deepcopy(pipe).cuda().to(dtype)
            probs = model(torch.from_numpy(images).cuda().to(dtype)).float()
            pred = probs.argmax(1).cpu().numpy()
            out[name] = _dice(pred[valid], labels[valid], ckpt["labels"])
    out["fp16_minus_fp32"] = {k: round(out["fp16"][k] - out["fp32"][k], 4) for k in out["fp32"]}
    out["slices"] = int(len(images))
    return out


def _dice(pred: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict:
    scores = {}
    for index, name in enumerate(labels[1:], start=1):
        p, t = pred == index, truth == index
        scores[name] = round(float(2 * np.sum(p & t) / max(1, np.sum(p) + np.sum(t))), 4)
    scores["mean"] = round(float(np.mean(list(scores.values()))), 4)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("demo/model.pt"))
    parser.add_argument("--slices", type=Path, help="npz with images (n,1,256,256), labels (n,256,256), valid")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--budget-s", type=float, default=300, help="skip torch.compile rows after this many seconds")
    args = parser.parse_args()
    deadline = time.time() + args.budget_s
    import torch

    report = {"host": platform.node(), "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
              "cuda_layer": check_cuda_layer()}
    print(json.dumps(report["cuda_layer"]), flush=True)
    if args.slices:
        report["accuracy"] = accuracy(args.checkpoint, args.slices)
        print(json.dumps(report["accuracy"]), flush=True)
    report["torch_path"] = torch_path(args.checkpoint, deadline)
    text = json.dumps(report, indent=2)
    if args.json:
        from psf.bench.provenance import write_run_json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        write_run_json(args.json.parent)
    print(text)


if __name__ == "__main__":
    main()
