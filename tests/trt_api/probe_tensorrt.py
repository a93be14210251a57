"""Run in a fresh interpreter with one TensorRT release's bindings importable (stub native libraries):
reads psf's TensorRT uses (JSON on stdin, from tests/trt_api/usage.py), checks each against that release
and prints one JSON report on stdout. No builder or runtime is created: the stubs would return null.

Signatures come from the pybind11 docstrings ("name(self: X, a: T, b: T = default) -> R", one line per
overload); a call passes when some overload takes its positional count and keyword names. A chain
continues through a call's documented return type (network.get_input(0) -> ITensor -> .dtype).
"""

from __future__ import annotations

import inspect
import json
import re
import sys

import tensorrt_bindings as trt

RECEIVERS = json.loads(sys.argv[1])  # usage.RECEIVERS, passed by the test


def split_params(text: str) -> list[str]:
    """'self: A, a: B[int, str], b: C = None' -> the three parameters (commas inside brackets kept)."""
    out, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        out.append(current.strip())
    return out


def signatures(func, name: str) -> list[dict]:
    """The documented overloads of `func`: [{"params": [(name, has_default)], "returns": "..."}]."""
    doc = getattr(func, "__doc__", None) or ""
    found = []
    for match in re.finditer(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) -> (\S+)", doc, re.M):
        params = [p for p in split_params(match.group(1)) if not p.startswith("self")]
        found.append({"params": [(p.split(":")[0].split("=")[0].strip(), "=" in p) for p in params],
                      "returns": match.group(2)})
    if not found and not hasattr(func, "__self__") and inspect.isfunction(func):  # a Python function (trt.nptype)
        sig = inspect.signature(func)
        found.append({"params": [(p.name, p.default is not p.empty) for p in sig.parameters.values()], "returns": ""})
    return found


def accepts(overload: dict, positional: int, keywords: list[str]) -> bool:
    params = overload["params"]
    if any(n.startswith("*") for n, _ in params):
        return True
    if positional > len(params):
        return False
    rest = {n: d for n, d in params[positional:]}
    if any(k not in rest for k in keywords):
        return False
    return all(d or n in keywords for n, d in rest.items())


def resolve_type(text: str):
    """'tensorrt_bindings.tensorrt.ITensor' -> trt.ITensor (None for non-TensorRT types)."""
    name = text.rsplit(".", 1)[-1].strip(",")
    return getattr(trt, name, None) if "tensorrt" in text else None


def check(use: dict) -> list[str]:
    """Problems with one chain of steps (empty: it conforms)."""
    current = trt if use["root"] == "trt" else getattr(trt, RECEIVERS[use["root"]], None)
    where = f"{use['where']} {use['root']}"
    if current is None:
        return [f"{where}: trt.{RECEIVERS[use['root']]} does not exist"]
    for step in use["steps"]:
        kind, name = step[0], step[1]
        if current is None:  # past a non-TensorRT value (a str, an int): nothing more to check here
            return []
        if not hasattr(current, name):
            return [] if use["optional"] else [f"{where}: {getattr(current, '__name__', current)}.{name} does not exist"]
        attr = getattr(current, name)
        where += f".{name}"
        if kind == "set":
            prop = inspect.getattr_static(current, name, None)
            if not isinstance(prop, property) or prop.fset is None:
                return [f"{where}: not a writable property"]
            return []
        if kind == "attr":
            current = attr if (inspect.isclass(attr) or inspect.ismodule(attr)) else None
            continue
        positional, keywords = step[2], step[3]
        target, label = (attr.__init__, "__init__") if inspect.isclass(attr) else (attr, name)
        overloads = signatures(target, label)
        if not overloads:
            return [f"{where}: no documented signature"]
        if not any(accepts(o, positional, keywords) for o in overloads):
            documented = " | ".join("(" + ", ".join(n + ("=..." if d else "") for n, d in o["params"]) + ")" for o in overloads)
            return [f"{where}: psf passes {positional} positional {keywords or ''}, documented {documented}"]
        current = attr if inspect.isclass(attr) else resolve_type(overloads[0]["returns"])
    return []


def main() -> None:
    uses = json.loads(sys.stdin.read())
    problems = [p for use in uses for p in check(use)]
    optional_missing = [u["where"] + " " + ".".join(s[1] for s in u["steps"]) for u in uses
                        if u["optional"] and check({**u, "optional": False})]
    sys.path.insert(0, ".")
    from psf.export.trt_build import dla_available, network_flags

    facts = {
        "version": trt.__version__,
        "network_flags": network_flags(trt),
        "strongly_typed_flag": int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") else None,
        "has_fp16_flag": hasattr(trt.BuilderFlag, "FP16"),
        "dla_available": dla_available(trt.__version__),
        "nptype_float": str(trt.nptype(trt.DataType.FLOAT).__name__),
        "nptype_half": str(trt.nptype(trt.DataType.HALF).__name__),
        "logger": type(trt.Logger(trt.Logger.WARNING)).__name__,
    }
    print(json.dumps({"problems": problems, "optional_missing": optional_missing, "facts": facts, "checked": len(uses)}))


if __name__ == "__main__":
    main()
