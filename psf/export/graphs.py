"""The four exported graphs, as thin torch modules with the bundle's tensor names and outputs.

With a consortium key (psf.models.key) the encoder ends in the image key's 1x1 convolution and the
decoder starts with the mask key's inverse, so the latents on the wire are keyed and the key lives
only in the client's graphs; the map graph is unchanged (it was trained on keyed latents).

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


def _lock(key):
    return key.image.forward_module() if key is not None else nn.Identity()


def _unlock(key):
    return key.mask.inverse_module() if key is not None else nn.Identity()


class Encoder(nn.Module):
    def __init__(self, nets: Networks, key=None):
        super().__init__()
        self.encoder, self.lock = nets.image_encoder, _lock(key)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.lock(self.encoder(image))


class Mapping(nn.Module):
    def __init__(self, nets: Networks, key=None):
        super().__init__()
        self.mapping = nets.mapping

    def forward(self, z_image: torch.Tensor) -> torch.Tensor:
        return self.mapping(z_image)


class Decoder(nn.Module):
    def __init__(self, nets: Networks, key=None):
        super().__init__()
        self.unlock, self.decoder = _unlock(key), nets.mask_decoder

    def forward(self, z_mask: torch.Tensor) -> torch.Tensor:
        return channel_softmax(self.decoder(self.unlock(z_mask)))


class Pipeline(nn.Module):
    def __init__(self, nets: Networks, key=None):
        super().__init__()
        self.encoder, self.mapping, self.decoder = Encoder(nets, key), nets.mapping, Decoder(nets, key)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.mapping(self.encoder(image)))


# stage -> (module class, input name, output name, input source)
GRAPHS = {
    "encoder": (Encoder, "image", "z_image"),
    "map": (Mapping, "z_image", "z_mask"),
    "decoder": (Decoder, "z_mask", "probs"),
    "pipeline": (Pipeline, "image", "probs"),
}
