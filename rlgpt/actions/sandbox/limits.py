"""Limits of one code-action call and the process-wide limits of env workers.

Wall time applies everywhere (SIGALRM in a main thread, else a line tracer). Env worker
processes add an address-space rlimit, periodic wall and CPU ticks and a hard CPU stop.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any, TextIO

from rlgpt.actions.sandbox.errors import frame_line
from rlgpt.logging import get_logger

log = get_logger("rlgpt.sandbox")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits applied to one code-action call.

    Wall time, steps, recursion and message size apply everywhere. CPU time and memory are
    enforced in env worker processes (see `enter_worker_mode`): a CPU timer per call (raised
    as a `cpu` error), a hard per-call CPU stop that ends the worker when the code is stuck
    inside one C-level operation (the worker is then replaced), and an address-space limit
    (RLIMIT_AS) of the worker's measured baseline plus `memory_mb`.
    """

    wall_seconds: float = field(
        default=10.0, metadata={"description": "Wall-time budget of one call, in seconds."}
    )
    max_steps: int = field(
        default=300, metadata={"description": "Env steps one call of a code action may take."}
    )
    recursion_depth: int = field(
        default=200,
        metadata={"description": "Python frames the call may add above the caller's depth."},
    )
    max_source_chars: int = field(
        default=20_000, metadata={"description": "Largest accepted source, in characters."}
    )
    available_seconds: float = field(
        default=1.0,
        metadata={"description": "Wall-time budget of one `available(api)` call, in seconds."},
    )
    cpu_seconds: float = field(
        default=10.0,
        metadata={"description": "CPU-time budget of one call in an env worker, in seconds."},
    )
    hard_stop_grace_seconds: float = field(
        default=2.0,
        metadata={
            "description": "CPU seconds past `cpu_seconds` after which a call stuck in one "
            "C-level operation is stopped by killing its worker (which is then replaced)."
        },
    )
    memory_mb: int = field(
        default=1024,
        metadata={
            "description": "Address space an env worker may grow above its measured baseline "
            "(torch, numpy and the env included), in MiB; 0 disables the limit."
        },
    )
    end_episode_on_breach: bool = field(
        default=True,
        metadata={
            "description": "A limit breach (timeout, cpu, memory, recursion) ends the episode "
            "as a failure: the call was cut at an arbitrary point, so the env is not trusted."
        },
    )
    max_message_chars: int = field(
        default=600,
        metadata={"description": "Longest error message passed on to the critic."},
    )

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the limits (for reports and subprocess arguments)."""
        return asdict(self)


class CallTimeout(BaseException):
    """Raised by the wall-time alarm; a BaseException so nothing in the call can swallow it."""

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.line = line


class CpuTimeout(CallTimeout):
    """Raised by SIGPROF (the per-call CPU timer) inside a worker."""


@dataclass
class WorkerGuard:
    """Per-process state of a worker's sandbox limits."""

    baseline_mb: float
    memory_limit_mb: float | None
    report_fd: int
    main_ident: int
    active: bool = False
    filename: str = ""
    deadline: float = 0.0
    cpu_deadline: float | None = None
    hard_stop: float = 12.0

    def info(self) -> dict[str, Any]:
        """What `enter_worker_mode` reports: pid, baseline, memory limit, report pipe."""
        return {
            "pid": os.getpid(),
            "baseline_mb": round(self.baseline_mb, 1),
            "memory_limit_mb": self.memory_limit_mb,
            "report_fd": self.report_fd,
        }


_WORKER: WorkerGuard | None = None
# The hard stop: ITIMER_VIRTUAL (user CPU of the call) -> SIGVTALRM, dumped by faulthandler
# without needing the GIL, then the signal's default action ends the process.
HARD_STOP_SIGNAL = signal.SIGVTALRM
_REPORT_FD: int | None = None


def set_worker_report(fd: int | None) -> None:
    """Where `enter_worker_mode` sends the hard stop's traceback (a supervisor's pipe)."""
    global _REPORT_FD
    _REPORT_FD = fd


def worker_report_fd() -> int | None:
    """The report pipe set by the supervisor of this worker, if any."""
    return _REPORT_FD


def address_space_mb() -> float:
    """This process's virtual address space (what RLIMIT_AS counts), in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# Workers check their limits on periodic ticks instead of arming timers on every call:
# a code action called every env step then costs no system call at all.
TICK_SECONDS = 0.2


def _on_tick(signum: int, frame: FrameType | None) -> None:
    """SIGALRM (wall) and SIGPROF (CPU) tick of a worker: enforce the running call's limits.

    Reaching this handler proves the interpreter is running Python code, so the hard stop
    (ITIMER_VIRTUAL) is pushed away; only code stuck in one C-level operation, where no
    handler can run, lets it expire.
    """
    guard = _WORKER
    if guard is None:
        return
    if guard.active:
        if time.monotonic() > guard.deadline:
            guard.active = False
            raise CallTimeout(frame_line(frame, guard.filename))
        if guard.cpu_deadline is not None and time.process_time() > guard.cpu_deadline:
            guard.active = False
            raise CpuTimeout(frame_line(frame, guard.filename))
    signal.setitimer(signal.ITIMER_VIRTUAL, guard.hard_stop)


def _stop_ticks() -> None:
    for timer in (signal.ITIMER_REAL, signal.ITIMER_PROF, signal.ITIMER_VIRTUAL):
        signal.setitimer(timer, 0)


def enter_worker_mode(
    limits: SandboxLimits | None = None, report: TextIO | int | None = None
) -> dict[str, Any]:
    """Apply the process-wide limits of an env worker that runs code actions (idempotent).

    Sets RLIMIT_AS to the measured baseline plus `limits.memory_mb` (MemoryError becomes a
    `memory` error of the call); starts periodic wall (SIGALRM) and CPU (SIGPROF) ticks of
    `TICK_SECONDS` whose handler raises inside a call past its wall or CPU deadline; and
    arms the hard stop: SIGVTALRM (ITIMER_VIRTUAL, pushed back to `cpu_seconds +
    hard_stop_grace_seconds` of user CPU by every tick that reaches Python) only expires
    when code is stuck in one C-level operation where no Python handler can run; then
    faulthandler writes a traceback to `report` (stderr by default) and the signal's
    default action ends the process. Supervisors read that report to tell the critic which
    line was running, and replace the worker.

    Must be called in the main thread of a process that is not the user's main process.

    Returns:
        pid, baseline_mb, memory_limit_mb and report_fd of the worker.
    """
    global _WORKER
    if _WORKER is not None:
        return _WORKER.info()
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("enter_worker_mode must run in the worker's main thread")
    limits = limits or SandboxLimits()
    if report is None:
        fd = _REPORT_FD if _REPORT_FD is not None else sys.stderr.fileno()
    elif isinstance(report, int):
        fd = report
    else:
        fd = report.fileno()
    # chain=True: after dumping the traceback, the default action of SIGPROF ends the process.
    faulthandler.register(HARD_STOP_SIGNAL, file=fd, all_threads=True, chain=True)
    # A crash in C code (SIGSEGV, SIGBUS, SIGFPE, SIGABRT) reports its Python traceback too:
    # the supervisor reads the code action's line from it.
    faulthandler.enable(file=fd, all_threads=True)
    # Handlers and periodic ticks stay installed for the worker's life; a call only sets its
    # deadlines. SA_RESTART keeps the ticks from interrupting system calls of other code.
    for signum in (signal.SIGALRM, signal.SIGPROF):
        signal.signal(signum, _on_tick)
        signal.siginterrupt(signum, False)
    baseline = address_space_mb()
    memory_limit: float | None = None
    if limits.memory_mb > 0:
        memory_limit = baseline + limits.memory_mb
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = int(memory_limit * 2**20)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    _WORKER = WorkerGuard(
        baseline_mb=baseline,
        memory_limit_mb=memory_limit,
        report_fd=fd,
        main_ident=threading.get_ident(),
    )
    _WORKER.hard_stop = hard_stop_seconds(limits)
    signal.setitimer(signal.ITIMER_VIRTUAL, _WORKER.hard_stop)
    signal.setitimer(signal.ITIMER_REAL, TICK_SECONDS, TICK_SECONDS)
    signal.setitimer(signal.ITIMER_PROF, TICK_SECONDS, TICK_SECONDS)
    # Interpreter shutdown restores default handlers; a tick then must not end the process.
    atexit.register(_stop_ticks)
    log.debug("sandbox_worker_limits", **_WORKER.info())
    return _WORKER.info()


def in_worker_mode() -> bool:
    """Whether this process runs code actions under worker limits."""
    return _WORKER is not None


def worker_guard() -> WorkerGuard | None:
    """This process's worker limits; None outside worker mode."""
    return _WORKER


def hard_stop_seconds(limits: SandboxLimits) -> float:
    """User-CPU seconds of one call after which its worker is ended."""
    return float(limits.cpu_seconds + limits.hard_stop_grace_seconds)


def call_in_worker(
    guard: WorkerGuard,
    function: Callable[[Any], Any],
    proxy: Any,
    limits: SandboxLimits,
    seconds: float,
    filename: str,
) -> Any:
    """The worker's call: sets the deadlines the periodic ticks enforce (no system call).

    Raises CallTimeout / CpuTimeout (with the running line) from the tick handler.
    """
    guard.deadline = time.monotonic() + seconds
    # A single-threaded call spends no more CPU than wall time: the CPU clock is only read
    # when the CPU budget is the tighter limit.
    cpu = limits.cpu_seconds
    guard.cpu_deadline = time.process_time() + cpu if cpu < seconds else None
    guard.hard_stop = hard_stop_seconds(limits)
    guard.filename = filename
    guard.active = True
    try:
        return function(proxy)
    finally:
        guard.active = False


def stack_depth() -> int:
    """Frames on the current stack (a call's recursion limit is set above it)."""
    depth = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


@contextmanager
def wall_time_limit(seconds: float, filename: str) -> Iterator[None]:
    """Raise CallTimeout after `seconds`, via SIGALRM in a main thread, else via a line tracer.

    The exception carries the line of generated code that was running at the timeout. Any
    previous SIGALRM handler and its pending timer (e.g. a test-runner timeout) are restored
    afterwards. Used outside worker mode (workers keep their handlers installed).
    """
    deadline = time.monotonic() + seconds
    if threading.current_thread() is threading.main_thread():

        def on_alarm(signum: int, frame: FrameType | None) -> None:
            raise CallTimeout(frame_line(frame, filename))

        previous = signal.signal(signal.SIGALRM, on_alarm)
        old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
        started = time.monotonic()
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if old_delay > 0:
                remaining = max(old_delay - (time.monotonic() - started), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, remaining, old_interval)
        return

    # Off the main thread signals cannot be used; trace only the generated code's frames.
    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != filename:
            return None
        if time.monotonic() > deadline:
            raise CallTimeout(frame.f_lineno)
        return tracer

    previous_trace = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous_trace)
