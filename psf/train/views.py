"""The client stages' training material: geometric views of every training slice, made once before training.

View 0 of a slice is the slice itself; views 1..V-1 are random flips, rotations, scales and shifts
(psf.train.augment.geometric), resampled once so the costly warping is not repeated every step. With a
folder they are written there as row files (psf.train.rowfile) and read a batch at a time: memory then does
not grow with the data set (psf-train does this); without one they are held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from psf.progress import progress_bar
from psf.train.augment import crop_window, geometric, one_hot
from psf.train.rowfile import RowWriter

# Slices warped per call (the random draws are made in this order: the same seed gives the same views).
DRAW_BLOCK = 64


class Views:
    """`count` views of each of the n slices of `images` (n, C, S, S) float32 and `labels` (n, S, S) uint8
    (arrays, or psf.train.rowfile.RowFile rows on disk). Index i is view i // n of slice i % n (view-major).

    `background`: each image channel's value outside the field of view; `bounded`: images in [0, 1] (False for
    z-scored CT: psf.train.augment.intensity then leaves out gamma and clipping); `folder`: where to keep the
    views on disk (None: in memory)."""

    def __init__(self, images, labels, num_classes: int, count: int, gen: torch.Generator,
                 background: list[float] | None = None, bounded: bool = True, folder: Path | None = None,
                 quiet: bool = True):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label slices")
        self.num_classes, self.count, self.bounded = num_classes, count, bounded
        self.n = len(images)
        self.size = int(images.shape[-1])
        made_images = _Store(folder, "view_images", self.n * count, np.float32, images.shape[1:])
        made_labels = _Store(folder, "view_labels", self.n * count, np.uint8, labels.shape[1:])
        with progress_bar(quiet) as bar:
            task = bar.add_task("client: augmented views", total=self.n * count, unit="views")
            for view in range(count):
                self._make_view(view, images, labels, background, gen, made_images, made_labels)
                bar.update(task, completed=(view + 1) * self.n)
        self.images, self.labels = made_images.finish(), made_labels.finish()

    def _make_view(self, view: int, images, labels, background, gen, made_images, made_labels) -> None:
        for start in range(0, self.n, DRAW_BLOCK):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + DRAW_BLOCK]))
            y = torch.from_numpy(np.ascontiguousarray(labels[start : start + DRAW_BLOCK]))
            if view > 0:
                x, soft = geometric(x, one_hot(y, self.num_classes), gen, background=background)
                y = soft.argmax(1).to(y.dtype)
            made_images.append(x.numpy()), made_labels.append(y.numpy())

    def __len__(self) -> int:
        return self.n * self.count

    @property
    def slices(self) -> torch.Tensor:
        """The slice each view index was made from (the grouping the server's membership defenses use)."""
        return view_slices(self.n, self.count)

    def crops(self, idx: torch.Tensor, size: int, gen: torch.Generator, multiple: int = 1,
              images: bool = True, labels: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One random size x size window (drawn from `gen`, offsets a multiple of `multiple`) of the views `idx`:
        images (b, C, size, size) float32 and/or labels (b, size, size) int64."""
        top, left, size = crop_window(self.size, size, gen, multiple)
        rows = np.asarray(idx, dtype=np.int64)
        x = torch.from_numpy(np.ascontiguousarray(self.images[rows][..., top : top + size, left : left + size])) if images else None
        y = torch.from_numpy(self.labels[rows][..., top : top + size, left : left + size]).long() if labels else None
        return x, y

    def batch(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole views start..stop-1: images (b, C, S, S) float32, labels (b, S, S) int64."""
        stop = min(stop, len(self))
        return torch.from_numpy(np.ascontiguousarray(self.images[start:stop])), torch.from_numpy(self.labels[start:stop]).long()


class _Store:
    """Where views are written in index order: a preallocated array, or a row file in `folder`."""

    def __init__(self, folder: Path | None, name: str, total: int, dtype, row_shape):
        self.array = np.empty((total, *row_shape), dtype) if folder is None else None
        self.writer = None if folder is None else RowWriter(Path(folder) / f"{name}.rows", dtype, row_shape)
        self.at = 0

    def append(self, rows: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.append(rows)
        else:
            self.array[self.at : self.at + len(rows)] = rows
        self.at += len(rows)

    def finish(self):
        return self.array if self.writer is None else self.writer.close()


def view_slices(slices: int, views: int) -> torch.Tensor:
    """The slice each view index was made from (view-major, slice-minor)."""
    return torch.arange(slices).repeat(views)
