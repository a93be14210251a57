"""The four exported graphs, as thin torch modules with the bundle's tensor names and outputs.

The decoder ends in a softmax written out with per-class slices: ONNX Runtime's Softmax over the
channel axis of an NCHW tensor transposes internally and cost 2.6 ms of a 9.7 ms pipeline on 2 cores;
ReduceMax/ReduceSum over that axis cost 0.9 ms at 256x256, elementwise Max/Sum of the class slices 0.6 ms.
"""

from __future__ import annotations

import torch
from torch import nn

from psf.models import Networks


def channel_softmax(logits: torch.Tensor) -> torch.Tensor:
    classes = logits.split(1, dim=1)
    peak = classes[0]
    for c in classes[1:]:
        peak = torch.maximum(peak, c)
    shifted = torch.exp(logits - peak)
    parts = shifted.split(1, dim=1)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return shifted / total


class Encoder(nn.Module):
    def __init__(self, nets: Networks):
        super().__init__()
        self.encoder = nets.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class Mapping(nn.Module):
    def __init__(self, nets: Networks):
        super().__init__()
        self.mapping = nets.mapping

    def forward(self, z_image: torch.Tensor) -> torch.Tensor:
        return self.mapping(z_image)


class Decoder(nn.Module):
    def __init__(self, nets: Networks):
        super().__init__()
        self.decoder = nets.mask_decoder

    def forward(self, z_mask: torch.Tensor) -> torch.Tensor:
        return channel_softmax(self.decoder(z_mask))


class Pipeline(nn.Module):
    def __init__(self, nets: Networks):
        super().__init__()
        self.encoder, self.mapping, self.decoder = nets.image_encoder, nets.mapping, nets.mask_decoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return channel_softmax(self.decoder(self.mapping(self.encoder(image))))


# stage -> (module class, input name, output name, input source)
GRAPHS = {
    "encoder": (Encoder, "image", "z_image"),
    "map": (Mapping, "z_image", "z_mask"),
    "decoder": (Decoder, "z_mask", "probs"),
    "pipeline": (Pipeline, "image", "probs"),
}
