"""Arrays of equal-shaped rows kept on disk and read a batch at a time: training data larger than memory.

Rows are read with pread into fresh buffers rather than through a memory map: mapped pages that a
training run has touched count in the process' resident memory until the kernel reclaims them, so a
mapped 20 GB data set looks like a 20 GB process; pages read through the page cache do not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from psf.errors import PsfError


class RowWriter:
    """Appends rows of one dtype and shape to PATH (raw bytes) and, on close, PATH.json (dtype, shape)."""

    def __init__(self, path: Path, dtype, row_shape: tuple[int, ...]):
        self.path, self.dtype, self.row_shape = Path(path), np.dtype(dtype), tuple(int(s) for s in row_shape)
        self.count = 0
        self._file = open(self.path, "wb")

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {rows.shape[1:]}, this file holds {self.row_shape}")
        self._file.write(rows.tobytes())
        self.count += len(rows)

    def close(self) -> "RowFile":
        self._file.close()
        header = {"dtype": self.dtype.str, "row_shape": list(self.row_shape), "count": self.count}
        Path(f"{self.path}.json").write_text(json.dumps(header) + "\n")
        return RowFile(self.path)

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self._file.closed:
            self._file.close()


class RowFile:
    """A read-only array of `count` rows on disk: `rows[i]`, `rows[a:b]` and `rows[index_array]` return numpy
    arrays read from the file (only those rows), `len(rows)` and `rows.shape` as for an array."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            header = json.loads(Path(f"{self.path}.json").read_text())
            self.dtype = np.dtype(header["dtype"])
            self.row_shape = tuple(header["row_shape"])
            self.count = int(header["count"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PsfError(f"{self.path}: unreadable row file ({exc}); delete its cache folder to rebuild it") from None
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        if os.path.getsize(self.path) != self.row_bytes * self.count:
            raise PsfError(f"{self.path}: {os.path.getsize(self.path)} bytes, expected {self.row_bytes * self.count}; "
                           "delete its cache folder to rebuild it")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, *self.row_shape)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.count)
            if step == 1:
                return self._read_run(start, max(start, stop))
            index = np.arange(start, stop, step)
        if np.isscalar(index) or (isinstance(index, np.ndarray) and index.ndim == 0):
            return self[np.array([int(index)])][0]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = np.where(index < 0, index + self.count, index).astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.count):
            raise IndexError(f"{self.path}: row index out of range 0..{self.count - 1}")
        out = np.empty((len(index), *self.row_shape), self.dtype)
        for i, row in enumerate(index):
            out[i] = np.frombuffer(os.pread(self._fd, self.row_bytes, int(row) * self.row_bytes), self.dtype).reshape(self.row_shape)
        return out

    def _read_run(self, start: int, stop: int) -> np.ndarray:
        out = bytearray((stop - start) * self.row_bytes)
        view, offset = memoryview(out), start * self.row_bytes
        while view:  # one pread returns at most ~2 GiB on Linux
            got = os.preadv(self._fd, [view[: 1 << 30]], offset)
            if got == 0:
                raise PsfError(f"{self.path}: shorter than its header says; delete its cache folder to rebuild it")
            view, offset = view[got:], offset + got
        return np.frombuffer(out, self.dtype).reshape(stop - start, *self.row_shape)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass
