"""psf's TensorRT and cuda-bindings calls against the real releases, on every CPU run (no GPU needed).

TensorRT 10.3 (JetPack 6), 10.13 (JetPack 7) and 11.4 import here with stub native libraries
(tests/trt_api/releases.py); every TensorRT name psf's source touches (found by AST, tests/trt_api/usage.py)
must exist there and every call must fit a documented signature. cuda-bindings 12.9 and 13.5 run every
call psf.runtime.cuda makes: without a driver each must come back as CUDA's error, not a TypeError.
Wheels are cached in ~/.cache/psf-trt-wheels; the tests skip (with the reason) only when a wheel is
not cached and cannot be downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trt_api import releases
from tests.trt_api.usage import RECEIVERS, cuda_runtime_names, tensorrt_uses

HERE = Path(__file__).parent

# Uses that must be reported (they prove the checker can fail): wrong arity, an unknown keyword, a
# missing enum member, a method assigned as if it were a property, a missing class member.
CANARIES = [
    {"root": "config", "steps": [["call", "set_timing_cache", 1, []]]},
    {"root": "parser", "steps": [["call", "parse", 1, ["no_such_argument"]]]},
    {"root": "trt", "steps": [["attr", "BuilderFlag"], ["attr", "NO_SUCH_FLAG"]]},
    {"root": "runtime", "steps": [["set", "deserialize_cuda_engine"]]},
    {"root": "context", "steps": [["call", "execute_async_v3", 2, []]]},
    {"root": "engine", "steps": [["attr", "no_such_member"]]},
]


def _prepared(make, *args):
    try:
        return make(*args)
    except releases.Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def uses() -> list[dict]:
    found = tensorrt_uses()
    roots = {u["root"] for u in found}
    # psf's naming convention is what ties a variable to a TensorRT class: every receiver must be in use,
    # so renaming one in the code cannot silently drop its calls from this check.
    assert roots >= set(RECEIVERS) - {"logger"} | {"trt"}, f"receivers not found in the code: {set(RECEIVERS) - roots}"
    assert len(found) >= 40
    return found


@pytest.mark.parametrize("name,version", releases.TENSORRT, ids=[v for _, v in releases.TENSORRT])
def test_every_tensorrt_name_and_signature_psf_uses_exists(uses, name, version):
    path = _prepared(releases.tensorrt_path, name, version)
    canaries = [{**c, "optional": False, "where": f"canary{i}"} for i, c in enumerate(CANARIES)]
    result = releases.run_probe(HERE / "probe_tensorrt.py", [path], json.dumps(uses + canaries), json.dumps(RECEIVERS))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    real = [p for p in report["problems"] if not p.startswith("canary")]
    assert real == [], f"TensorRT {version}: " + "\n".join(real)
    flagged = {p.split()[0] for p in report["problems"] if p.startswith("canary")}
    assert flagged == {f"canary{i}" for i in range(len(CANARIES))}, "the checker missed a wrong use"
    facts = report["facts"]
    assert facts["version"] == version
    major = int(version.split(".")[0])
    # Strongly typed: the flag on 10.x; on 11 the flag is deprecated and ignored, and psf passes none.
    assert facts["network_flags"] == (1 << facts["strongly_typed_flag"] if major == 10 else 0)
    assert facts["has_fp16_flag"] is (major == 10)  # FP16/INT8 builder flags are gone in 11
    assert facts["dla_available"] is (version == "10.3.0")  # 10.7 was the last DLA release
    assert (facts["nptype_float"], facts["nptype_half"]) == ("float32", "float16")


@pytest.mark.parametrize("version", releases.CUDA_BINDINGS)
def test_every_cuda_bindings_call_psf_makes_is_accepted(version):
    path = _prepared(releases.cuda_bindings_path, version)
    result = releases.run_probe(HERE / "probe_cuda.py", path, "")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["version"] == report["api_version"] == version
    wrong = {k: v["wrong"] for k, v in report["outcome"].items() if "wrong" in v}
    assert wrong == {}, f"cuda-bindings {version} rejected psf's arguments: {wrong}"
    # Without a driver, CUDA answers with its own error for every call that reaches it.
    assert "cudaErrorInsufficientDriver" in report["outcome"]["device_count"]["cuda_error"] or \
        "cudaErrorNoDevice" in report["outcome"]["device_count"]["cuda_error"]
    missing = set(cuda_runtime_names()) - set(report["used"])
    assert missing == set(), f"psf.runtime.cuda uses {missing}, which the probe never called"
