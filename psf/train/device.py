"""Where training runs: `--device auto|cpu|cuda|cuda:N` -> a torch device string, checked before any work."""

from __future__ import annotations

from psf.errors import UsageError


def resolve_device(name: str) -> str:
    """"auto": the first CUDA GPU when torch sees one, else the CPU; "cuda[:N]" must exist."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: torch sees no CUDA GPU (CPU-only torch wheel or no driver); "
                             "use --device cpu, or install a CUDA torch build")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0..")
        return f"cuda:{index}"
    raise UsageError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")
