"""One-shot worker processes for generated code, with death reports and partial results."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import select
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from rlgpt.actions.sandbox import SandboxLimits, set_worker_report, worker_death_error
from rlgpt.actions.sandbox.black_box import BlackBox, attach
from rlgpt.logging import get_logger

log = get_logger("rlgpt.sandbox_worker")

MAX_REPORT_BYTES = 64_000
# Keeps each worker's report pipe open for the life of the process (faulthandler writes to it).
_REPORT_KEEP: list[Connection] = []
_RESULT_CONN: list[Connection] = []

# Imported once by the forkserver, so env and evaluation workers fork with them loaded (and
# the forkserver never re-imports the user's `__main__`).
WORKER_PRELOAD: tuple[str, ...] = (
    "rlgpt.actions.options",
    "rlgpt.envs.crafter.compiled_gym",
    "rlgpt.envs.crafter.compiled_loaded",
    "rlgpt.envs.crafter.env",
    "rlgpt.envs.crafter.skills.api",
    "rlgpt.tools.evaluate",
    "rlgpt.tools.rl_pipeline",
)


def prepare_forkserver() -> None:
    """Set the forkserver's preload list (no effect once the server runs)."""
    mp.get_context("forkserver").set_forkserver_preload(list(WORKER_PRELOAD))


class WorkerDied(RuntimeError):
    """A worker process ended while running generated code; `error` is the structured error."""

    def __init__(
        self, error: dict[str, Any], report: str = "", partials: Sequence[Any] = ()
    ) -> None:
        super().__init__(error["message"])
        self.error = error
        self.report = report
        self.partials = list(partials)


def send_partial(value: Any) -> None:
    """From inside `run_in_worker`: pass a partial result to the caller right away.

    Partial results survive the worker's death (the caller keeps them), so long work
    reports each finished piece.
    """
    if _RESULT_CONN:
        _RESULT_CONN[0].send(("partial", value))


def adopt_report(report: Connection, last_call: str | None = None) -> None:
    """In a worker: make `report` (a pipe to the supervisor) the hard stop's report channel
    and `last_call` (a supervisor's black box file) where skill calls are noted."""
    _REPORT_KEEP.append(report)
    set_worker_report(report.fileno())
    if last_call is not None:
        attach(last_call)


def read_report(reader: Connection, wait: float = 0.5) -> str:
    """Everything a (dead) worker wrote to its report pipe, without blocking for long."""
    fd = reader.fileno()
    chunks: list[bytes] = []
    deadline = time.monotonic() + wait
    size = 0
    while size < MAX_REPORT_BYTES:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0.0))
        if not ready:
            break
        chunk = os.read(fd, 65_536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def worker_note(text: str) -> None:
    """Write a progress note (e.g. the seed being run) to this worker's report pipe."""
    from rlgpt.actions import sandbox

    fd = sandbox.worker_report_fd()
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(fd, f"note: {text}\n".encode())


def _one_shot_entry(
    conn: Connection,
    report: Connection,
    last_call: str,
    function: Callable[..., Any],
    kwargs: dict[str, Any],
) -> None:
    adopt_report(report, last_call)
    _RESULT_CONN.append(conn)
    try:
        result = function(**kwargs)
    except BaseException as exc:  # sent back to the caller, which re-raises it
        try:
            conn.send(("error", exc))
        except Exception:  # an unpicklable exception: send its text
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        return
    conn.send(("ok", result))


def run_in_worker(
    function: Callable[..., Any],
    kwargs: dict[str, Any],
    timeout: float | None = None,
    limits: SandboxLimits | None = None,
    on_partial: Callable[[Any], None] | None = None,
) -> Any:
    """Run `function(**kwargs)` in a fresh forkserver worker and return its result.

    `on_partial` receives what the function passes to `send_partial`, as it arrives.

    Raises:
        WorkerDied: The worker ended without answering (hard CPU stop, crash); carries the
            structured error built from its report.
        TimeoutError: No answer within `timeout` seconds (the worker is killed).
        Exception: Whatever `function` raised in the worker.
    """
    prepare_forkserver()
    ctx = mp.get_context("forkserver")
    parent, child = ctx.Pipe()
    reader, writer = ctx.Pipe(duplex=False)
    box = BlackBox()
    process = ctx.Process(
        target=_one_shot_entry, args=(child, writer, box.path, function, kwargs), daemon=True
    )
    process.start()
    child.close()
    writer.close()
    partials: list[Any] = []
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 1.0 if deadline is None else min(1.0, max(deadline - time.monotonic(), 0))
            if parent.poll(wait):
                try:
                    status, value = parent.recv()
                except (EOFError, ConnectionResetError):
                    break
                if status == "partial":
                    partials.append(value)
                    if on_partial is not None:
                        on_partial(value)
                    continue
                if status == "error":
                    raise value
                return value
            if not process.is_alive() and not parent.poll(0):
                break
            if deadline is not None and time.monotonic() >= deadline:
                process.kill()
                process.join()
                raise TimeoutError(f"the worker took longer than {timeout} s")
        process.join(timeout=10)
        report = read_report(reader)
        error = worker_death_error(report, process.exitcode, limits, box.read())
        raise WorkerDied(error, report, partials)
    finally:
        if process.is_alive():
            process.kill()
        process.join(timeout=10)
        parent.close()
        reader.close()
        box.close()


__all__ = [
    "WorkerDied",
    "adopt_report",
    "read_report",
    "run_in_worker",
    "send_partial",
    "worker_note",
]
