"""Training data on disk: row files, the slice cache, and views made on demand from either."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch

from psf.errors import PsfError
from psf.train.rowfile import RowFile, RowWriter
from tests.train.tiny import tiny_dataset

NORM = {"method": "percentile", "lower": 0.5, "upper": 99.5}


def test_row_file_reads_any_rows_as_the_array_would(tmp_path):
    rows = np.random.default_rng(0).random((50, 2, 3, 4)).astype(np.float32)
    with RowWriter(tmp_path / "x.rows", np.float32, (2, 3, 4)) as writer:
        writer.append(rows[:20])
        writer.append(rows[20:])
        stored = writer.close()
    assert stored.shape == rows.shape and len(stored) == 50
    for index in ([3, 3, 49, 0, -1], np.arange(5, 17), rows[:, 0, 0, 0] > 0.5):
        assert np.array_equal(stored[index], rows[index])
    assert np.array_equal(stored[7:31], rows[7:31]) and np.array_equal(stored[40:], rows[40:])
    assert np.array_equal(stored[4], rows[4])
    with pytest.raises(IndexError, match="x.rows"):
        stored[[50]]
    with open(tmp_path / "x.rows", "ab") as f:  # a torn file is refused, naming it and the fix
        f.write(b"\0")
    with pytest.raises(PsfError, match=r"x.rows: .* delete its cache folder"):
        RowFile(tmp_path / "x.rows")


def test_cached_split_holds_what_load_split_reads_and_is_rebuilt_only_when_the_data_changes(tmp_path):
    from psf.train.cache import cached_split
    from psf.train.data import dataset_info, load_split

    data = tiny_dataset(tmp_path / "data", labels=3, cases=3)
    info = dataset_info(data)
    memory = load_split(data, "train", 32, NORM, info=info)
    disk = cached_split(data, "train", 32, NORM, info=info, quiet=True)
    for name in ("images", "labels", "valid"):
        assert isinstance(getattr(disk, name), RowFile)
        assert np.array_equal(getattr(disk, name)[:], getattr(memory, name))
    assert np.array_equal(disk.volumes, memory.volumes) and np.array_equal(disk.positions, memory.positions)
    assert [tuple(c) for c in disk.cases] == [tuple(c) for c in memory.cases]
    entry = disk.images.path.parent
    assert entry.parent == data / ".psf-cache"

    built = os.stat(entry / "meta.json").st_mtime_ns
    again = cached_split(data, "train", 32, NORM, info=info, quiet=True)  # reused, not rebuilt
    assert again.images.path == disk.images.path and os.stat(entry / "meta.json").st_mtime_ns == built
    assert cached_split(data, "train", 32, {"method": "window", "low": 0, "high": 255}, info=info, quiet=True).images.path.parent != entry

    path = data / "train" / "labels" / "c1.nii.gz"  # a changed file gives a new entry with the new labels
    label = np.asarray(nib.load(path).dataobj).copy()
    label[:] = 0
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(path))
    changed = cached_split(data, "train", 32, NORM, info=info, quiet=True)
    assert changed.images.path.parent != entry
    assert not changed.labels[np.flatnonzero(changed.volumes == 1)].any()
    entries = sorted(p.name for p in (data / ".psf-cache").iterdir())  # the stale entry of this recipe went
    assert len(entries) == 2 and entry.name not in entries


def test_a_failed_cache_build_leaves_nothing_behind(tmp_path):
    from psf.train.cache import cached_split
    from psf.train.data import dataset_info

    data = tiny_dataset(tmp_path / "data", labels=3, cases=3)
    (data / "train" / "images" / "c2.nii.gz").write_bytes(b"not a NIfTI file")
    with pytest.raises(PsfError, match="c2.nii.gz"):
        cached_split(data, "train", 32, NORM, info=dataset_info(data), quiet=True)
    assert list((data / ".psf-cache").iterdir()) == []


def test_views_on_disk_equal_views_in_memory_and_a_crop_is_its_whole_view_cropped(tmp_path):
    from psf.train.cache import cached_split
    from psf.train.data import dataset_info, load_split
    from psf.train.views import Views

    data = tiny_dataset(tmp_path / "data", labels=4, channels=2, cases=3)
    info = dataset_info(data)
    memory, disk = load_split(data, "train", 32, NORM, info=info), cached_split(data, "train", 32, NORM, info=info, quiet=True)
    a = Views(memory.images, memory.labels, 4, 5, torch.Generator().manual_seed(1), background=[0.0, 0.0])
    b = Views(disk.images, disk.labels, 4, 5, torch.Generator().manual_seed(1), background=[0.0, 0.0])
    assert len(a) == len(b) == 5 * len(memory)
    whole_a, whole_b = a.batch(0, len(a)), b.batch(0, len(b))
    assert torch.equal(whole_a[0], whole_b[0]) and torch.equal(whole_a[1], whole_b[1])
    assert not torch.equal(whole_a[0][: len(memory)], whole_a[0][len(memory) : 2 * len(memory)])  # views differ
    assert torch.equal(whole_a[0][: len(memory)], torch.from_numpy(memory.images))  # view 0: the slice itself

    idx = torch.tensor([len(a) - 1, 0, 7, 7, 3 * len(memory) + 2])
    gen = torch.Generator().manual_seed(5)
    top, left = (int(v) * 8 for v in torch.randint(0, (32 - 16) // 8 + 1, (2,), generator=torch.Generator().manual_seed(5)))
    x, y = b.crops(idx, 16, gen, 8)
    assert torch.equal(x, whole_a[0][idx][..., top : top + 16, left : left + 16])
    assert torch.equal(y, whole_a[1][idx][..., top : top + 16, left : left + 16])
