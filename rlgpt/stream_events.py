"""Custom events for LangGraph's `custom` stream (RL progress, model calls), from any node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

StreamWriter = Callable[[dict[str, Any]], None]


def stream_writer() -> StreamWriter | None:
    """LangGraph's custom-stream writer inside a graph run; None outside one."""
    try:
        from langgraph.config import get_stream_writer

        return get_stream_writer()
    except (RuntimeError, ImportError, KeyError):
        return None


def emit(event: dict[str, Any]) -> None:
    """Send `event` to the run's custom stream; nothing happens outside a graph run."""
    writer = stream_writer()
    if writer is not None:
        writer(event)
