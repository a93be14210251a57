"""Torch networks of Privacy-SF (training, export and audit only; never imported by the runtime)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from psf.models.autoencoders import (
    image_decoder,
    image_encoder,
    mask_decoder,
    mask_encoder,
)
from psf.models.config import ModelConfig
from psf.models.mapping import MappingNet

NETWORK_NAMES = ("image_encoder", "image_decoder", "mask_encoder", "mask_decoder", "mapping")


@dataclass
class Networks:
    """The five networks of one model. Client: image_encoder, mask_decoder (+ the two for training)."""

    config: ModelConfig
    image_encoder: nn.Module
    image_decoder: nn.Module
    mask_encoder: nn.Module
    mask_decoder: nn.Module
    mapping: nn.Module

    def state_dicts(self) -> dict[str, dict]:
        return {name: getattr(self, name).state_dict() for name in NETWORK_NAMES}

    def load_state_dicts(self, states: dict[str, dict]) -> None:
        for name in NETWORK_NAMES:
            getattr(self, name).load_state_dict(states[name])

    def eval(self) -> "Networks":
        for name in NETWORK_NAMES:
            getattr(self, name).eval()
        return self

    def to(self, device) -> "Networks":
        """Move every network to `device` ("cpu", "cuda:0", ...); checkpoints are always saved from the CPU."""
        for name in NETWORK_NAMES:
            setattr(self, name, getattr(self, name).to(device))
        return self


def build_networks(cfg: ModelConfig) -> Networks:
    cfg.check()
    return Networks(
        config=cfg,
        image_encoder=image_encoder(cfg),
        image_decoder=image_decoder(cfg),
        mask_encoder=mask_encoder(cfg),
        mask_decoder=mask_decoder(cfg),
        mapping=MappingNet(cfg),
    )
