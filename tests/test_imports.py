"""The edge path never loads torch: a Jetson runs it with ONNX Runtime / TensorRT and numpy only."""

from __future__ import annotations

import subprocess
import sys


def test_inference_path_does_not_import_torch():
    code = (
        "import sys; import psf.runtime, psf.runtime.ort, psf.io, psf.cli.infer, psf.cli.main, psf.pipeline.scan, "
        "psf.pipeline.segmenter, psf.manifest, psf.serve.client, psf.serve.server, psf.serve.schema, psf.serve.launch, "
        "psf.serve.repository, psf.cli.serve, psf.bench.load, psf.runtime.trt, psf.runtime.cuda, psf.cli.build, "
        "psf.export.trt_build, psf.export.trt_verify, psf.export.precision, psf.export.variants, psf.export.calibration, "
        "psf.bench.jetson, psf.bench.run, psf.bench.peak, psf.bench.provenance, psf.serve.triton_model, "
        "psf.serve.tritonserver, psf.serve.guard, psf.serve.mapnet, psf.runtime.engines, psf.io.atomic, psf.eval, "
        "psf.data.dataset; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_help_is_fast_and_torch_free():
    code = "import sys; from psf.cli.main import app; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"
