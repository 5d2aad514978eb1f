"""Cooperative stop of long node work (RL training) on run cancellation or a node timeout."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

#: The stop signal of the node step running in this context (None outside a graph step).
STOP_EVENT: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "rlgpt_stop_event", default=None
)


def stop_requested() -> bool:
    """True once the current node step was cancelled or ran past `node_timeout`."""
    event = STOP_EVENT.get()
    return event is not None and event.is_set()


def stop_check() -> Callable[[], bool] | None:
    """A cheap callable polling the current step's stop signal (None outside a graph step)."""
    event = STOP_EVENT.get()
    return event.is_set if event is not None else None
