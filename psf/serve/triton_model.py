"""The map net as a Triton Python-backend model: what runs inside each model instance psf-serve starts.

Triton's dynamic batcher hands `execute` several clients' requests at once. Each request is checked on
its own (wire dtype, shape with its batch dimension, batch size, finite values) before it joins the
batch; a refused request gets its own one-line error and the others are answered. Nothing here sends a
traceback or a path to a client; the server log gets one rate-limited line per refusal (guard.py), and
the full detail of an internal failure only with psf-serve --debug. Refusals are counted in Triton's
metrics as psf_refused_requests_total{model, reason}.

Triton finds this class through the model folder's model.py (written by psf.serve.tritonserver); the
folder holds a link to the bundle, so the model config carries no path.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import numpy as np

from psf.serve.guard import REASONS, RefusalLog, RequestRefused, one_line

INTERNAL_ERROR = "the map server failed on this batch; retry, and tell its operator if it persists"


def _parameters(config: dict) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb  # only inside Triton's backend stub

        from psf.manifest import load_manifest
        from psf.serve.mapnet import MapNetOptions, map_runner
        from psf.serve.schema import WireSchema

        self.pb = pb
        config = json.loads(args["model_config"])
        params = _parameters(config)
        folder = Path(args["model_repository"]) / str(args["model_version"])
        manifest = load_manifest(folder / "bundle")
        self.schema = WireSchema.for_bundle(manifest, params["psf_wire"])
        self.max_batch = int(config["max_batch_size"])
        self.debug = params.get("psf_debug") == "1"
        options = MapNetOptions(backend=params["psf_backend"], precision=params["psf_precision"],
                                threads=int(params["psf_threads"]) or None, max_batch=self.max_batch)
        self.runner = map_runner(manifest, options).activate()
        self.log = RefusalLog(pb.Logger.log_warn, debug=self.debug)
        family = pb.MetricFamily(name="psf_refused_requests_total", kind=pb.MetricFamily.COUNTER,
                                 description="Requests the map server refused, by reason")
        self._metric_family = family  # must outlive its metrics
        self.refusals = {reason: family.Metric(labels={"model": self.schema.model_name, "reason": reason}) for reason in REASONS}

    def _latents(self, request) -> np.ndarray:
        tensor = self.pb.get_input_tensor_by_name(request, self.schema.input_name)
        if tensor is None:
            raise RequestRefused("input", f"model {self.schema.model_name} takes one input {self.schema.input_name!r}")
        latents = tensor.as_numpy()
        self.schema.check_request(latents, self.max_batch)
        return latents

    def _error(self, message: str):
        return self.pb.InferenceResponse(error=self.pb.TritonError(message))

    def execute(self, requests: list) -> list:
        """One response per request, in order: the good ones mapped in one call, the bad ones refused alone."""
        responses: list = [None] * len(requests)
        accepted: list[tuple[int, np.ndarray]] = []
        for index, request in enumerate(requests):
            try:
                accepted.append((index, self._latents(request)))
            except RequestRefused as refused:
                self.refusals[refused.reason].increment(1)
                self.log.refused(self.schema.model_name, refused.reason, str(refused))
                responses[index] = self._error(one_line(str(refused)))
            except Exception as exc:  # unreadable in a way Triton let through: refused alone, detail only in the log
                self.refusals["input"].increment(1)
                self.log.refused(self.schema.model_name, "input", f"unreadable request: {type(exc).__name__}: {exc}")
                responses[index] = self._error(f"model {self.schema.model_name} could not read input {self.schema.input_name!r}")
        if accepted:
            try:
                joined = np.concatenate([latents for _, latents in accepted]).astype(np.float32)
                mapped = self.runner.infer({self.schema.input_name: joined})[self.schema.output_name].astype(self.schema.dtype)
                start = 0
                for index, latents in accepted:
                    part = np.ascontiguousarray(mapped[start : start + len(latents)])
                    start += len(latents)
                    responses[index] = self.pb.InferenceResponse(output_tensors=[self.pb.Tensor(self.schema.output_name, part)])
            except Exception as exc:  # the runner's own failure: the clients learn only that it failed
                self.refusals["internal"].increment(len(accepted))
                self.log.refused(self.schema.model_name, "internal",
                                 f"the map net failed on {len(accepted)} request(s): {type(exc).__name__}: {exc}")
                if self.debug:
                    self.pb.Logger.log_error(traceback.format_exc())
                for index, _ in accepted:
                    responses[index] = self._error(INTERNAL_ERROR)
        return responses

    def finalize(self) -> None:
        self.runner.deactivate()
