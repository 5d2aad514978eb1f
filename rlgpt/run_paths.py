"""Paths in a run folder's files: relative to the folder on disk, absolute in memory."""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any

#: What `run_dir` reads in a saved state: the folder the file lies in.
HERE = "."

# A character that can continue a path name: the run folder's path followed by one of these
# names some other file (`/runs/a` in `/runs/ab`), so it is left alone.
_NAME_CHAR = r"\w.\-"


def _pattern(run_dir: str | Path) -> re.Pattern[str]:
    """What names the run folder in a string: its path as given (relative to the working
    directory when the runs directory was), absolute, and with symlinks resolved (the
    library and the RL pipeline resolve theirs)."""
    given = Path(run_dir)
    absolute = {str(given.absolute()), str(given.resolve())}
    # Longest first, so the absolute spelling wins over a relative one it ends with.
    spellings = sorted(absolute, key=len, reverse=True)
    alternatives = [rf"(?:{'|'.join(re.escape(s) for s in spellings)})(?:/|(?![{_NAME_CHAR}]))"]
    if not given.is_absolute() and str(given) != HERE:
        # A relative spelling only as the start of a longer path: alone it may be a plain
        # word (the run id, when the runs directory is the working directory).
        alternatives.append(rf"{re.escape(str(given))}/")
    return re.compile(rf"(?<![{_NAME_CHAR}/])(?:{'|'.join(alternatives)})")


def portable(value: Any, run_dir: str | Path) -> Any:
    """`value` (JSON-like) with every path into `run_dir` made relative to it.

    A string that is such a path becomes the relative path (`.` for the folder itself);
    one that mentions such a path (an error message, a failure trace) mentions the relative
    one instead. Paths outside the folder are kept as they are.
    """
    pattern = _pattern(run_dir)

    def text(s: str) -> str:
        out = pattern.sub(lambda m: "" if m.group(0).endswith("/") else HERE, s)
        # "<run dir>/" alone names the folder too.
        return out or (HERE if s else s)

    def walk(v: Any) -> Any:
        if isinstance(v, str | PurePath):
            return text(str(v))
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return v

    return walk(value)


def relative_to_run(value: Any, recorded: str) -> Any:
    """`value` with paths into the folder a state names as its `run_dir` made relative;
    unchanged when that is `.` (read back from the folder, so already relative)."""
    return value if recorded == HERE else portable(value, recorded)


def saved_state(state: dict[str, Any]) -> dict[str, Any]:
    """A run's state as its folder keeps it: its paths relative to the folder, `run_dir` `.`.

    A live state names absolute paths (or paths relative to the working directory); so does
    a metrics.json of an older version, into where the run was written.
    """
    recorded = str(state.get("run_dir") or HERE)
    converted: dict[str, Any] = relative_to_run(dict(state), recorded)
    converted["run_dir"] = HERE
    return converted


def in_folder(folder: Path, path: str | Path) -> Path:
    """Where a path read from a run folder's file lies: a relative one is under `folder`; an
    absolute one (an older file, or a path outside the folder) is kept."""
    return folder / path
