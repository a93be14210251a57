"""The hub's store of encoded pairs: one shard per hospital, named after the site, removable.

A shard holds exactly what psf.train.stages.EncodedPairs holds: the image and mask latents and an
integer group per pair (equal for the views of one slice). Removing a hospital's data from the
consortium is deleting its shard and retraining the mapping net.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psf.io.atomic import atomic_path

FIELDS = ("z_image", "z_mask", "groups")


def shard_path(folder: Path, site: str) -> Path:
    return Path(folder) / f"{site}.npz"


def save_shard(folder: Path, site: str, arrays: dict[str, np.ndarray]) -> Path:
    missing = [f for f in FIELDS if f not in arrays]
    if missing:
        raise ValueError(f"shard from {site}: missing {', '.join(missing)}")
    target = shard_path(folder, site)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{f_: np.asarray(arrays[f_]) for f_ in FIELDS})
    return target


def load_shards(folder: Path, sites: list[str]):
    """EncodedPairs over the named sites' shards; groups are offset so no two sites share one."""
    import torch

    from psf.train.stages import EncodedPairs

    zx, zy, groups, offset = [], [], [], 0
    for site in sites:
        with np.load(shard_path(folder, site)) as s:
            zx.append(torch.from_numpy(s["z_image"]))
            zy.append(torch.from_numpy(s["z_mask"]))
            g = torch.from_numpy(s["groups"]).long()
            groups.append(g + offset)
            offset += int(g.max()) + 1 if len(g) else 0
    return EncodedPairs(torch.cat(zx), torch.cat(zy), torch.cat(groups))


def remove_shard(folder: Path, site: str) -> bool:
    path = shard_path(folder, site)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed
