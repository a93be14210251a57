from __future__ import annotations

import pytest

from psf.io.atomic import atomic_path, write_text_atomic


def test_failed_write_leaves_old_file_and_no_partial(tmp_path):
    target = write_text_atomic(tmp_path / "mask.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.txt"]
