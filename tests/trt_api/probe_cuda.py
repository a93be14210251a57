"""Run in a fresh interpreter with one cuda-bindings release importable, on a machine without a usable GPU:
calls every method of psf.runtime.cuda.CudaBindings with the arguments the runtime passes and prints one
JSON report: which cuda.bindings.runtime names were used, and what each method raised. Without a driver
every call must come back as CUDA's own error (CudaError), never a TypeError: that is how a wrong
argument count or type shows here. The module is wrapped only to record which names were looked up.
"""

from __future__ import annotations

import json

import numpy as np


class Recorder:
    """Forwards every attribute to the real module and remembers its name."""

    def __init__(self, module):
        self._module, self.used = module, set()

    def __getattr__(self, name):
        self.used.add(name)
        return getattr(self._module, name)


def main() -> None:
    import cuda.bindings

    from psf.runtime.cuda import CudaBindings, CudaError, driver_advice

    api = CudaBindings()
    rt = api.rt
    api.rt = recorder = Recorder(rt)
    host = np.zeros(16, np.float32)
    stream, graph, graph_exec = rt.cudaStream_t(), rt.cudaGraph_t(), rt.cudaGraphExec_t()
    calls = {
        "device_count": lambda: api.device_count(),
        "set_device": lambda: api.set_device(0),
        "make_current": lambda: api.make_current(),
        "device_info": lambda: api.device_info(0),
        "malloc": lambda: api.malloc(64),
        "free": lambda: api.free(0),
        "malloc_host": lambda: api.malloc_host(64),
        "free_host": lambda: api.free_host(0),
        "stream_create": lambda: api.stream_create(),
        "stream_handle": lambda: api.stream_handle(stream),
        "stream_sync": lambda: api.stream_sync(stream),
        "stream_destroy": lambda: api.stream_destroy(stream),
        "to_device": lambda: api.to_device(0, host, stream),
        "to_host": lambda: api.to_host(host, 0, stream),
        "device_copy": lambda: api.device_copy(0, 0, 64, stream),
        "begin_capture": lambda: api.begin_capture(stream),
        "end_capture": lambda: api.end_capture(stream),
        "instantiate": lambda: api.instantiate(graph),
        "launch": lambda: api.launch(graph_exec, stream),
        "destroy_graph": lambda: api.destroy_graph(graph, graph_exec),
        "destroy_captured_graph": lambda: api.destroy_graph(graph, None),  # what a failed capture frees
        "clear_error": lambda: api.clear_error(),
        "driver_version": lambda: api.driver_version(),
    }
    outcome = {}
    for name, call in calls.items():
        try:
            value = call()
            outcome[name] = {"ok": repr(value)[:80]}
        except CudaError as exc:
            outcome[name] = {"cuda_error": str(exc)[:160]}
        except Exception as exc:  # the thing this probe exists to catch: report, do not hide
            outcome[name] = {"wrong": f"{type(exc).__name__}: {exc}"[:300]}
    print(json.dumps({"version": cuda.bindings.__version__, "api_version": api.version, "used": sorted(recorder.used),
                      "outcome": outcome, "advice": driver_advice(api.version, api.driver_version())}))


if __name__ == "__main__":
    main()
