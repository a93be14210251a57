"""The membership attacker's reference nets: per-slice losses of mapping nets that never saw the slice.

Two reference mapping nets, each trained (like the server's, from scratch) on every other slice along the
scan axis of all the encoded pairs the attacker holds (train, val and test). Every slice is then scored by
the net of the other fold, whose training slices lie 1 mm on either side: the same for members and
non-members, so its loss measures how hard the slice is, not where the split put it.
"""

from __future__ import annotations

import numpy as np
import torch

from psf.privacy.membership import interleaved_folds

SPLITS = ("train", "val", "test")


@torch.no_grad()
def map_losses(mapping, enc) -> np.ndarray:
    """Per-slice MSE of a mapping net on encoded pairs (`enc.z_image`, `enc.z_mask`): the attacks' raw score."""
    mapping.eval()
    out = torch.cat([mapping(enc.z_image[i : i + 32]) for i in range(0, len(enc.z_image), 32)])
    return ((out - enc.z_mask) ** 2).mean((1, 2, 3)).numpy()


def out_of_fold_losses(config, encoded: dict, seconds: float, gen: torch.Generator, quiet: bool = False) -> dict[str, np.ndarray]:
    """{split: per-slice loss under the reference net that did not train on that slice}; `encoded[s]` has
    z_image, z_mask and positions (mm, or None: the slices' order stands in)."""
    from psf.models.mapping import MappingNet
    from psf.train.loop import Budget
    from psf.train.stages import EncodedPairs, StageOptions, train_mapping

    z_image = torch.cat([encoded[s].z_image for s in SPLITS])
    z_mask = torch.cat([encoded[s].z_mask for s in SPLITS])
    positions = [encoded[s].positions for s in SPLITS]
    fold = torch.from_numpy(interleaved_folds(None if any(p is None for p in positions) else np.concatenate(positions), len(z_image)))
    losses = np.zeros(len(z_image))
    for k in (0, 1):
        reference = MappingNet(config)
        seen = fold == k
        train_mapping(reference, EncodedPairs(z_image[seen], z_mask[seen]),
                      StageOptions(Budget(seconds=seconds), batch_size=16, crop=config.grid // 2, quiet=quiet), gen,
                      name=f"attacker: reference mapping net {k + 1}/2 (every other slice)")
        losses[~seen.numpy()] = map_losses(reference, EncodedPairs(z_image[~seen], z_mask[~seen]))
    edges = np.cumsum([0] + [len(encoded[s].z_image) for s in SPLITS])
    return {s: losses[a:b] for s, a, b in zip(SPLITS, edges, edges[1:])}
