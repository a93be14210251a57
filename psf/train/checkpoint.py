"""model.pt: one checkpoint of plain data (config, state dicts, labels, normalization, metrics, versions).

Loadable with torch.load(weights_only=True): a model file is data, never code.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from psf import __version__
from psf.errors import PsfError
from psf.io.atomic import atomic_path
from psf.models import Networks, build_networks
from psf.models.config import ModelConfig

FORMAT = "psf-model/1"


def save_checkpoint(path: Path, nets: Networks, labels: list[str], normalization: dict | list, metrics: dict,
                    training: dict, key_id: str | None = None, channels: list[str] | None = None,
                    modality: str = "MR") -> Path:
    """model.pt; with a consortium key only its id is stored (the key stays in the client's key file).
    `normalization`: one spec, or one per input channel; `channels` names the input channels."""
    payload = {
        "format": FORMAT,
        "config": nets.config.to_dict(),
        "state_dicts": nets.state_dicts(),
        "labels": list(labels),
        "channels": list(channels) if channels else (["T1"] if nets.config.in_channels == 1
                                                     else [f"channel{c}" for c in range(nets.config.in_channels)]),
        "modality": modality,
        "normalization": dict(normalization) if isinstance(normalization, dict) else [dict(n) for n in normalization],
        "slice_axis": 2,
        "key_id": key_id,
        "metrics": metrics,
        "training": training,
        "versions": {"psf": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> tuple[Networks, dict]:
    """Rebuild the networks from a model.pt; returns (networks in eval mode, the checkpoint dict)."""
    path = Path(path)
    if not path.is_file():
        raise PsfError(f"{path}: no such checkpoint; train one with: psf-train DATA/ -o {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise PsfError(f"{path}: not a readable psf checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PsfError(f"{path}: not a {FORMAT} checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else None!r})")
    nets = build_networks(ModelConfig.from_dict(ckpt["config"]))
    nets.load_state_dicts(ckpt["state_dicts"])
    return nets.eval(), ckpt
