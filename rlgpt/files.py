"""Atomic file writes: a reader (or a writer killed halfway) never leaves a torn file."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_target(path: Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary sibling of `path` to write; it replaces `path` when the block ends
    without an error (with permissions `mode` if given) and is removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)  # mkstemp makes the file private
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, flushed to disk before it replaces the old file."""
    with atomic_target(path) as tmp, tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` atomically."""
    with atomic_target(dst) as tmp:
        shutil.copyfile(src, tmp)


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it came from) says the disk is full."""
    seen: BaseException | None = exc
    for _ in range(20):  # a chain of causes, never a cycle followed forever
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        # SQLite reports a full disk in its message ("database or disk is full").
        if type(seen).__module__ == "sqlite3" and "disk is full" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
