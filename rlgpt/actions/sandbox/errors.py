"""Structured errors of code actions: their kinds, the refusal exception, the line they name."""

from __future__ import annotations

from types import FrameType, TracebackType
from typing import Any, Literal

ErrorKind = Literal[
    "static",
    "runtime",
    "timeout",
    "cpu",
    "memory",
    "step_budget",
    "recursion",
    "return_type",
    "killed",
    "episode_end",
]

# Limit breaches: the call was cut at an arbitrary point (possibly inside an env step), so the
# env state is not trusted any more and the episode ends as a failure.
BREACH_KINDS: frozenset[str] = frozenset({"timeout", "cpu", "memory", "recursion", "killed"})


class CodeActionRejected(Exception):
    """A code action refused before it ran (static check or load failure)."""

    def __init__(self, kind: ErrorKind, message: str, line: int | None = None) -> None:
        super().__init__(f"{kind} error{f' at line {line}' if line else ''}: {message}")
        self.kind: ErrorKind = kind
        self.message = message
        self.line = line

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the exception picklable across worker processes (custom __init__ arguments).
        return (type(self), (self.kind, self.message, self.line))

    def as_dict(self) -> dict[str, Any]:
        """The structured error the coder and critic see."""
        return {"kind": self.kind, "message": self.message, "line": self.line, "step": 0}


def traceback_line(tb: TracebackType | None, filename: str) -> int | None:
    """The innermost line of a traceback that lies inside the generated code."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def frame_line(frame: FrameType | None, filename: str) -> int | None:
    """The innermost line of a live stack that lies inside the generated code."""
    while frame is not None:
        if frame.f_code.co_filename == filename:
            return frame.f_lineno
        frame = frame.f_back
    return None
