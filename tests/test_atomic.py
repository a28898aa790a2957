"""Files written whole or not at all (``atomic.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdcodec import atomic


def test_the_longest_legal_name_can_be_written(tmp_path):
    """The temporary file beside a 255-byte name must not be longer than the name."""
    path = tmp_path / ("x" * 251 + ".rdc")
    atomic.write_bytes(path, b"data")
    assert path.read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_check_writable_leaves_nothing_and_raises_what_a_write_would(tmp_path):
    atomic.check_writable(tmp_path / "out.rdc")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        atomic.check_writable(tmp_path / "no" / "out.rdc")
    if Path("/proc/self").is_dir():  # no file can be made there, even by root
        with pytest.raises(OSError):
            atomic.check_writable(Path("/proc/out.rdc"))
