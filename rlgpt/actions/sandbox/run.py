"""Running a loaded code action under the limits; every failure becomes a structured error."""

from __future__ import annotations

import re
import reprlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rlgpt.actions.sandbox.black_box import mark
from rlgpt.actions.sandbox.errors import ErrorKind, traceback_line
from rlgpt.actions.sandbox.limits import (
    HARD_STOP_SIGNAL,
    CallTimeout,
    CpuTimeout,
    SandboxLimits,
    call_in_worker,
    hard_stop_seconds,
    stack_depth,
    wall_time_limit,
    worker_guard,
)
from rlgpt.actions.sandbox.loader import CodeAction
from rlgpt.actions.sandbox.proxy import build_proxy, format_calls
from rlgpt.envs.base import OptionInterrupted
from rlgpt.logging import get_logger

log = get_logger("rlgpt.sandbox")


@dataclass
class Outcome:
    """The result of one code-action call."""

    success: bool
    steps: int
    error: dict[str, Any] | None = None
    interrupted: str | None = None
    seconds: float = 0.0
    trace: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON friendly)."""
        return asdict(self)


def _error(kind: ErrorKind, message: str, line: int | None, step: int, name: str) -> dict[str, Any]:
    return {"kind": kind, "message": message, "line": line, "step": step, "action": name}


def _clip(message: str, limit: int) -> str:
    """Bound a message (an exception may carry a huge value) before it leaves the call."""
    if len(message) <= limit:
        return message
    return f"{message[: max(limit - 40, 0)]}... [{len(message) - limit + 40} more characters]"


class _BoundedRepr(reprlib.Repr):
    """reprlib's bounded repr, also for bytes (reprlib would format all of them first)."""

    def repr_bytes(self, x: bytes, level: int) -> str:
        return repr(x[: self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    repr_bytearray = repr_bytes


def _describe(exc: BaseException, limit: int) -> str:
    """`Type: message`, clipped, built from the exception's arguments at bounded cost.

    `str(exc)` would format every argument in full (a KeyError on a 300 MB key takes
    seconds, after the call's limits have ended), so each argument is cut before it is
    formatted: strings and bytes are sliced, containers shortened by reprlib.
    """
    bounded = _BoundedRepr()
    bounded.maxstring = bounded.maxother = max(limit, 20)
    bounded.maxlevel = 3
    try:
        args = exc.args
        if len(args) == 1 and type(args[0]) is str and not isinstance(exc, KeyError):
            text = args[0][: limit + 1]  # a message: shown as written, not quoted
        else:
            text = ", ".join(bounded.repr(arg) for arg in args[:5])
    except BaseException:  # formatting generated values may raise anything
        text = "<message could not be formatted>"
    return _clip(f"{type(exc).__name__}: {text}", limit)


def call_code_function(
    action: CodeAction,
    function: Callable[[Any], Any],
    api: Any,
    limits: SandboxLimits,
    seconds: float,
    steps_used: Callable[[], int] | None = None,
) -> tuple[Any, dict[str, Any] | None, str | None]:
    """Call one function of a code action under the sandbox limits.

    Wall time and recursion depth apply everywhere; CPU time and memory in worker mode.

    Returns:
        (return value, structured error or None, interruption reason or None).
    """
    cached = action.proxy_cache
    if cached is not None and cached[1][0] is None and cached[2] is type(api):
        proxy, slot = cached[0], cached[1]
    else:
        # First call, another API type, or a nested call of the same action: a fresh proxy.
        proxy, slot = build_proxy(api, action.skill_names, action.calls, action.name)
        if cached is None:
            action.proxy_cache = (proxy, slot, type(api))
    slot[0] = api
    old_limit = sys.getrecursionlimit()
    filename = action.filename
    counted = steps_used or (lambda: 0)
    name = action.name
    clip = limits.max_message_chars
    try:
        sys.setrecursionlimit(stack_depth() + limits.recursion_depth)
        guard = worker_guard()
        if guard is not None and guard.main_ident == threading.get_ident():
            value = call_in_worker(guard, function, proxy, limits, seconds, filename)
        else:
            with wall_time_limit(seconds, filename):
                value = function(proxy)
        return value, None, None
    except CpuTimeout as exc:
        message = f"CPU-time limit of {limits.cpu_seconds:g} s exceeded"
        return None, _error("cpu", message, exc.line, counted(), name), None
    except CallTimeout as exc:
        message = f"wall-time limit of {seconds:g} s exceeded"
        return None, _error("timeout", message, exc.line, counted(), name), None
    except OptionInterrupted as exc:
        if exc.reason == "episode_end":
            return None, None, "episode_end"
        line = traceback_line(exc.__traceback__, filename)
        if exc.reason == "time_budget":
            err = _error("timeout", "time budget of the option spent", line, counted(), name)
            return None, err, exc.reason
        message = f"step budget of {limits.max_steps} env steps spent"
        return None, _error("step_budget", message, line, counted(), name), exc.reason
    except RecursionError as exc:
        line = traceback_line(exc.__traceback__, filename)
        message = f"recursion deeper than {limits.recursion_depth} frames"
        return None, _error("recursion", message, line, counted(), name), None
    except MemoryError as exc:
        line = traceback_line(exc.__traceback__, filename)
        guard = worker_guard()
        if guard is not None and guard.memory_limit_mb is not None:
            message = (
                f"memory limit exceeded: the worker may use {limits.memory_mb} MiB above its "
                f"baseline ({_describe(exc, 200)})"
            )
        else:
            message = f"out of memory ({_describe(exc, 200)})"
        return None, _error("memory", message, line, counted(), name), None
    except Exception as exc:  # generated code may raise anything; it becomes a structured error
        line = traceback_line(exc.__traceback__, filename)
        return None, _error("runtime", _describe(exc, clip), line, counted(), name), None
    finally:
        # The cached proxy keeps no path to this call's API (and env) after the call.
        slot[0] = None
        sys.setrecursionlimit(old_limit)


def run_code_action(
    action: CodeAction,
    api: Any,
    limits: SandboxLimits | None = None,
    steps_used: Callable[[], int] | None = None,
) -> Outcome:
    """Run `action.run(api)` under the limits and turn every failure into a structured error.

    An `OptionInterrupted("episode_end")` ends the call without an error. A return value
    other than a bool or None is a `return_type` error.

    Args:
        action: The loaded code action.
        api: The skill API (the code only sees a proxy of its skill methods).
        limits: Sandbox limits; defaults when None.
        steps_used: Returns the env steps spent so far by this call; by default the
            API's own count (`SkillAPI` keeps one).
    """
    limits = limits or SandboxLimits()
    if steps_used is None:
        # SkillAPI counts the steps it took; other APIs report none.
        steps_used = lambda: int(getattr(api, "_steps_used", 0))  # noqa: E731
    started = time.monotonic()
    action.calls.clear()
    value, error, interrupted = call_code_function(
        action, action.run, api, limits, limits.wall_seconds, steps_used
    )
    mark("returned")
    steps = steps_used()
    success = False
    if error is None and interrupted is None:
        if value is True or value is False or isinstance(value, np.bool_):
            success = bool(value)
        elif value is not None:
            error = _error(
                "return_type",
                f"run must return a bool (or None), got {type(value).__name__}",
                None,
                steps,
                action.name,
            )
    if error is not None:
        log.debug("code_action_error", **error)
    return Outcome(
        success=success,
        steps=steps,
        error=error,
        interrupted=interrupted,
        seconds=time.monotonic() - started,
        trace=format_calls(action.calls),
    )


def check_available(action: CodeAction, api: Any, limits: SandboxLimits | None = None) -> bool:
    """Evaluate `available(api)`; True when undefined, False when it fails or is not a bool."""
    if action.available is None:
        return True
    limits = limits or SandboxLimits()
    value, error, interrupted = call_code_function(
        action, action.available, api, limits, limits.available_seconds
    )
    if error is not None or interrupted is not None:
        return False
    return bool(value) if isinstance(value, bool | np.bool_) else False


_REPORT_FRAME = re.compile(r'File "<code_action:(?P<name>[^>"]*)>", line (?P<line>\d+)')


def worker_death_error(
    report: str,
    exitcode: int | None,
    limits: SandboxLimits | None = None,
    last_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The structured error for a worker that died while running code.

    Args:
        report: What the worker wrote to its report channel (the hard stop's traceback).
        exitcode: `multiprocessing.Process.exitcode` (negative: killed by that signal).
        limits: The limits the worker ran under (for the message).
        last_call: What the worker's black box holds (`black_box.BlackBox.read`).

    Returns:
        kind (`cpu` for the hard CPU stop, `memory` for the kernel's OOM kill, else
        `killed`), message, line and action (from the innermost code-action frame of the
        report, else the black box), the last skill call when known, step (None: the count
        died with the worker).
    """
    limits = limits or SandboxLimits()
    match = _REPORT_FRAME.search(report)
    line = int(match.group("line")) if match else None
    action = match.group("name") if match else None
    signum = -exitcode if exitcode is not None and exitcode < 0 else None
    signame = signal.Signals(signum).name if signum else None
    kind: ErrorKind = "killed"
    if signum == HARD_STOP_SIGNAL:
        kind = "cpu"
        hard_stop = hard_stop_seconds(limits)
        message = (
            f"CPU-time limit of {limits.cpu_seconds:g} s exceeded inside one operation that "
            f"cannot be interrupted (stopped after {hard_stop:g} s by ending the worker, which "
            "was replaced)"
        )
    elif signum == signal.SIGKILL:
        kind = "memory"
        message = "the worker was killed (SIGKILL, e.g. out of memory); it was replaced"
    elif signame is not None:
        message = f"the worker died by {signame}; it was replaced"
    else:
        message = f"the worker exited with code {exitcode}; it was replaced"
    error: dict[str, Any] = {
        "kind": kind,
        "message": message,
        "line": line,
        "step": None,
        "action": action,
    }
    if last_call:
        error["last_call"] = last_call["call"]
        error["action"] = action or last_call["action"] or None
        if last_call["state"] == "returned" and match is None:
            error["message"] += (
                f" after the code action had returned (its last skill call: {last_call['call']}"
                "), e.g. while freeing an object it built"
            )
        else:
            error["line"] = line if line is not None else last_call["line"]
            error["message"] += f"; its last skill call: {last_call['call']}"
            if last_call["state"] == "calling":
                error["message"] += " (the crash came inside that call)"
    return error
