"""A worker's last skill call, kept in a small shared file its supervisor reads after a crash.

A crash in C code (a segfault, the kernel's OOM kill) ends the worker without a word; the
supervisor then reads here what the code action was doing: its name, the skill it called
last, from which line, and whether the call had already returned.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from pathlib import Path
from typing import Any

SIZE = 512
_FIELDS = ("state", "action", "line", "call")

#: This worker's open black box (None outside workers with a supervisor).
_BOX: list[mmap.mmap] = []


class BlackBox:
    """The supervisor's side: a file of SIZE bytes a worker writes its last call into."""

    def __init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix="rlgpt-last-call-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"\0" * SIZE)
        self.path = name

    def read(self) -> dict[str, Any] | None:
        """What the worker wrote last (None when it wrote nothing)."""
        try:
            raw = Path(self.path).read_bytes()[:SIZE].split(b"\0", 1)[0]
        except OSError:
            return None
        if not raw:
            return None
        parts = raw.decode("utf-8", "replace").split("\t", len(_FIELDS) - 1)
        if len(parts) != len(_FIELDS):
            return None
        record: dict[str, Any] = dict(zip(_FIELDS, parts, strict=True))
        record["line"] = int(record["line"]) if record["line"].isdigit() else None
        return record

    def clear(self) -> None:
        """Forget what the last worker wrote (before a new worker uses the file)."""
        with contextlib.suppress(OSError), open(self.path, "r+b") as handle:
            handle.write(b"\0" * SIZE)

    def close(self) -> None:
        """Remove the file."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def attach(path: str) -> None:
    """In a worker: write the last calls into the supervisor's black box at `path`."""
    with open(path, "r+b") as handle:
        _BOX[:] = [mmap.mmap(handle.fileno(), SIZE)]


def record(state: str, action: str, line: int | None, call: str) -> None:
    """Note what the code action does now (`calling` a skill, `running` its own lines after
    one); cheap (one write into shared memory)."""
    if not _BOX:
        return
    _LAST[:] = [action, line, call]
    text = f"{state}\t{action}\t{line if line is not None else ''}\t{call}".encode(
        "utf-8", "replace"
    )[: SIZE - 1]
    _BOX[0][: len(text) + 1] = text + b"\0"


def mark(state: str) -> None:
    """Note a new state (e.g. `returned`) of the last recorded call."""
    if _BOX and _LAST:
        action, line, call = _LAST
        record(state, action, line, call)


_LAST: list[Any] = []
