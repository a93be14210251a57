"""What psf touches of TensorRT and cuda-bindings, read from psf's own source (AST), so the list cannot drift.

TensorRT: every attribute chain rooted at the module (`trt.X.Y`, `self.trt.X`) and every method call,
attribute read and attribute assignment on a variable whose name says which TensorRT object it holds
(RECEIVERS: psf's naming convention in psf/runtime/trt.py and psf/export/trt_build.py). A chain is a list
of steps: ["attr", name], ["call", name, positional count, keyword names] or ["set", name].
cuda-bindings: every `self.rt.NAME` psf/runtime/cuda.py uses.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRT_SOURCES = (REPO / "psf" / "runtime" / "trt.py", REPO / "psf" / "export" / "trt_build.py")
CUDA_SOURCE = REPO / "psf" / "runtime" / "cuda.py"

# Variable (or self attribute) name -> the TensorRT class it holds, by psf's naming convention.
RECEIVERS = {"builder": "Builder", "config": "IBuilderConfig", "network": "INetworkDefinition", "parser": "OnnxParser",
             "profile": "IOptimizationProfile", "engine": "ICudaEngine", "context": "IExecutionContext",
             "runtime": "Runtime", "cache": "ITimingCache", "logger": "ILogger"}


def _root(node: ast.AST) -> str | None:
    """'trt' for `trt` / `self.trt`, a RECEIVERS key for `config` / `self.config`, else None."""
    if isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        name = node.attr
    else:
        return None
    return name if name == "trt" or name in RECEIVERS else None


def _chain(node: ast.AST) -> tuple[str, list] | None:
    """(root, steps) for an expression like trt.Logger.WARNING or network.get_input(0).dtype."""
    steps: list = []
    while True:
        if (root := _root(node)) is not None:
            return (root, steps[::-1]) if steps else None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            steps.append(["call", node.func.attr, len(node.args), sorted(k.arg for k in node.keywords if k.arg)])
            node = node.func.value
        elif isinstance(node, ast.Call) and (root := _root(node.func)) == "trt":
            return None  # trt(...) itself: nothing psf does
        elif isinstance(node, ast.Attribute):
            steps.append(["attr", node.attr])
            node = node.value
        else:
            return None


def tensorrt_uses(sources=TRT_SOURCES) -> list[dict]:
    """Every TensorRT chain in `sources`, longest form only, with file:line (sorted, unique)."""
    uses = {}
    for source in sources:
        tree = ast.parse(source.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                found = _chain(node.args[0])  # getattr(trt.X, "NAME", default): optional by design
                if found:
                    root, steps = found
                    key = (root, repr(steps + [["attr", node.args[1].value]]))
                    uses[key] = {"root": root, "steps": steps + [["attr", node.args[1].value]], "optional": True,
                                 "where": f"{source.name}:{node.lineno}"}
                continue
            if not isinstance(node, (ast.Attribute, ast.Call)):
                continue
            parent = parents.get(node)
            if isinstance(parent, (ast.Attribute, ast.Call)) and (getattr(parent, "func", None) is node
                                                                  or getattr(parent, "value", None) is node):
                continue  # only the outermost expression of a chain
            found = _chain(node)
            if not found:
                continue
            root, steps = found
            if isinstance(parent, ast.Assign) and node in parent.targets:
                steps[-1] = ["set", steps[-1][1]]
            key = (root, repr(steps))
            uses.setdefault(key, {"root": root, "steps": steps, "optional": False, "where": f"{source.name}:{node.lineno}"})
    return sorted(uses.values(), key=lambda u: (u["where"], repr(u["steps"])))


def cuda_runtime_names(source: Path = CUDA_SOURCE) -> list[str]:
    """Every `self.rt.NAME` in psf/runtime/cuda.py: the cuda.bindings.runtime names psf uses."""
    tree = ast.parse(source.read_text())
    return sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and isinstance(node.value, ast.Attribute) and node.value.attr == "rt"
                   and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"})
