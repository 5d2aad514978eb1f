"""What code sees of the skill API: a proxy of its skills, plain results and a call trace."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Collection, Iterable
from types import SimpleNamespace
from typing import Any

import numpy as np

from rlgpt.actions.sandbox.black_box import record

#: Skill calls of one code-action call kept for the coder's feedback (the most recent).
TRACE_CALLS = 24

_PLAIN = (bool, int, float, str, type(None))


def plain_value(value: Any) -> Any:
    """A skill result as plain Python data (no numpy objects, no live references into the env).

    Numpy scalars and arrays carry file writers (`tofile`, `dump`) and raw memory access; env
    dicts and lists might be live state. Everything is copied into builtins.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, tuple):
        return tuple(plain_value(v) for v in value)
    if isinstance(value, list):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {plain_value(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return {plain_value(v) for v in value}
    if isinstance(value, np.generic | np.ndarray):
        return plain_value(value.tolist())
    for base in _PLAIN[:-1]:
        # Subclasses of builtins (enums, str subclasses) may carry methods of their own.
        if isinstance(value, base):
            return base(value)
    raise TypeError(f"a skill returned an unsupported {kind.__name__}")


def build_proxy(
    api: Any,
    skill_names: Collection[str],
    calls: deque[tuple[str, tuple[Any, ...], dict[str, Any], str]] | None = None,
    action: str = "",
) -> tuple[SimpleNamespace, list[Any]]:
    """A proxy of the skill methods and the one-item slot holding the API it forwards to;
    with `calls`, each skill call is recorded there as (skill, arguments, result) and in the
    worker's black box (with the code action's name and line)."""
    slot: list[Any] = [None]

    def forward(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if calls is None:
                return plain_value(getattr(slot[0], name)(*args, **kwargs))
            # The supervisor of a worker reads this after a crash: which skill, from where.
            caller = sys._getframe(1)
            line = caller.f_lineno if caller.f_code.co_filename.startswith("<code_action") else None
            shown = format_calls([(name, args, kwargs, "")])[0].removesuffix(" -> ")
            record("calling", action, line, shown)
            try:
                value = plain_value(getattr(slot[0], name)(*args, **kwargs))
            except BaseException as exc:
                calls.append((name, args, kwargs, f"raised {type(exc).__name__}"))
                raise
            record("running", action, line, shown)
            calls.append((name, args, kwargs, _short_repr(value)))
            return value

        call.__name__ = name
        call.__doc__ = getattr(getattr(type(api), name, None), "__doc__", None)
        return call

    methods = {n: forward(n) for n in skill_names if callable(getattr(api, n, None))}
    return SimpleNamespace(**methods), slot


def _short_repr(value: Any, limit: int = 60) -> str:
    if isinstance(value, str | bytes) and len(value) > limit:
        value = value[:limit]  # never build the repr of a huge value
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_calls(
    calls: Iterable[tuple[str, tuple[Any, ...], dict[str, Any], str]],
) -> list[str]:
    """Skill calls as lines like `api.move_to('tree') -> False`, repeats folded (`x7`)."""
    lines: list[str] = []
    last, repeats = "", 0
    for name, args, kwargs, result in calls:
        shown = ", ".join(
            [
                *(_short_repr(a, 30) for a in args),
                *(f"{k}={_short_repr(v, 30)}" for k, v in kwargs.items()),
            ]
        )
        line = f"api.{name}({shown}) -> {result}"
        if line == last:
            repeats += 1
            lines[-1] = f"{line} (x{repeats})"
            continue
        last, repeats = line, 1
        lines.append(line)
    return lines


def make_api_proxy(api: Any, skill_names: Collection[str]) -> SimpleNamespace:
    """An object exposing only the skill methods of `api` as plain forwarding functions.

    The functions reach the real API through a closure cell, which is only reachable
    through `_`-prefixed attributes; the static check refuses those, and attribute stores,
    so the proxy cannot be altered either. Results are copied into plain Python data
    (`plain_value`), so nothing the code receives leads back to the env.
    """
    proxy, slot = build_proxy(api, skill_names)
    slot[0] = api
    return proxy
