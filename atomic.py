"""Files written whole or not at all: each goes to a temporary file beside its target
(``.NAME.XXXXXXXX.part``, NAME cut short) and is renamed over it only once complete, so
a process killed at any moment leaves the old file or the new one, never part of one.
Every writer of the project goes through here (images and bitstreams through
``image_io.atomic_write``, which adds the overwrite policy; weight files, checkpoints,
the manifest, caches)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

# The target's name in its temporary file's name is cut to this many characters, so
# that any name legal for the target (up to 255 bytes) makes a legal temporary name.
_NAME_IN_TEMPORARY = 32


def atomic_write_all(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write a set of files (overwriting) with no partial output: each ``write(tmp_path)``
    goes to a temporary file beside its target, and the renames come only after all of
    them succeeded."""
    staged: dict[Path, Path] = {}
    try:
        for path, write in writers.items():
            fd, tmp = _temporary_beside(path)
            os.close(fd)
            staged[path] = Path(tmp)
            write(staged[path])
        mode = _new_file_mode()
        for path, tmp in staged.items():
            # mkstemp makes 0600 files; an output gets what open() would have given it.
            os.chmod(tmp, mode)
            os.replace(tmp, path)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise


def _temporary_beside(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(
        prefix=f".{path.name[:_NAME_IN_TEMPORARY]}.", suffix=".part", dir=path.parent
    )


def check_writable(path: str | os.PathLike) -> None:
    """Make and remove a temporary file beside ``path``, as a write of it would begin:
    raises the ``OSError`` that write would (a read-only or virtual filesystem, a
    folder without write permission), before the work that the write would end."""
    fd, tmp = _temporary_beside(Path(path))
    os.close(fd)
    os.unlink(tmp)


def _new_file_mode() -> int:
    """0666 less the process umask (read without changing it for other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_file(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """``write(tmp_path)``, then the rename over ``path`` (overwriting)."""
    atomic_write_all({Path(path): write})


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    write_file(path, lambda tmp: tmp.write_bytes(data))
