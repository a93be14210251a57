"""Demo centers: the MNI152 data set as several hospitals would record it, for multi-center work.

Each center gets its own simulated acquisition (documented in its dataset.json and in centers.json):
an intensity nonlinearity (gamma), a smooth multiplicative bias field, grey/white contrast compression,
blur (point-spread function), Rician noise, and the scanner's own scale and offset. Centers hold
disjoint training blocks (the k-th training block goes to center k mod N), so each has its own anatomy to learn from;
validation and test blocks are the same anatomy for all, recorded with each center's acquisition, so
per-center Dice compares like with like.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from psf.data.mni152 import build_mni152
from psf.io.atomic import write_text_atomic


@dataclass(frozen=True)
class Acquisition:
    name: str
    gamma: float = 1.0          # I -> I^gamma on intensities scaled to [0, 1]
    bias: float = 0.0           # peak-to-peak amplitude of a linear multiplicative field across x and y
    contrast: float = 1.0       # tissue intensities pulled toward their median by this factor
    blur_voxels: float = 0.0    # Gaussian PSF sigma
    noise: float = 0.0          # Rician noise sigma, as a share of the 99th percentile
    scale: float = 1.0          # scanner units
    offset: float = 0.0
    seed: int = 0

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        top = float(np.percentile(volume, 99.9)) or 1.0
        x = np.clip(volume / top, 0, None) ** self.gamma
        tissue = x > 0.05
        if self.contrast != 1.0:
            middle = float(np.median(x[tissue]))
            x = np.where(tissue, middle + self.contrast * (x - middle), x)
        if self.bias:
            gx, gy = np.meshgrid(np.linspace(-0.5, 0.5, x.shape[0]), np.linspace(-0.5, 0.5, x.shape[1]), indexing="ij")
            x = x * (1.0 + self.bias * (0.7 * gx + 0.3 * gy))[:, :, None]
        if self.blur_voxels:
            from scipy.ndimage import gaussian_filter

            x = gaussian_filter(x, self.blur_voxels)
        if self.noise:
            sigma = self.noise * float(np.percentile(x, 99))
            x = np.sqrt((x + rng.normal(0, sigma, x.shape)) ** 2 + rng.normal(0, sigma, x.shape) ** 2)
        return (self.scale * x + self.offset).astype(np.float32)


CENTERS = (
    Acquisition("center_a", gamma=0.8, bias=0.25, noise=0.02, scale=1000.0, seed=1),
    Acquisition("center_b", gamma=1.25, contrast=0.75, blur_voxels=0.8, noise=0.01, scale=4095.0, offset=100.0, seed=2),
    Acquisition("center_c", gamma=1.0, bias=-0.35, contrast=0.85, noise=0.035, scale=600.0, offset=-50.0, seed=3),
    Acquisition("center_d", gamma=0.9, blur_voxels=1.2, noise=0.015, scale=255.0, seed=4),
    Acquisition("center_e", gamma=1.1, bias=0.15, contrast=0.9, noise=0.025, scale=2000.0, seed=5),
)


def build_centers(out: Path, count: int, block: int = 10, gap: int = 1) -> dict[str, dict]:
    """OUT/<center>/{train,val,test}/... for `count` centers, and OUT/centers.json; returns counts per center."""
    if not 2 <= count <= len(CENTERS):
        from psf.errors import UsageError

        raise UsageError(f"--centers {count}: choose 2..{len(CENTERS)}")
    summary = {}
    for i, acquisition in enumerate(CENTERS[:count]):
        built = build_mni152(out / acquisition.name, block=block, gap=gap, acquisition=acquisition,
                             keep_train_block=lambda b, i=i: b % count == i, extra={"acquisition": asdict(acquisition)})
        summary[acquisition.name] = {"counts": built.counts, "acquisition": asdict(acquisition)}
    write_text_atomic(out / "centers.json", json.dumps({"centers": summary, "train_blocks": f"k-th training block -> center k mod {count}"}, indent=2))
    return summary
