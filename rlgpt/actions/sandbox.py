"""Static checks, restricted loading and limited execution of generated code actions."""

from __future__ import annotations

import ast
import atexit
import faulthandler
import os
import re
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import CodeType, FrameType, MappingProxyType, SimpleNamespace, TracebackType
from typing import Any, Literal, TextIO

import numpy as np

from rlgpt.envs.base import OptionInterrupted
from rlgpt.logging import get_logger

log = get_logger("rlgpt.sandbox")

#: Skill calls of one code-action call kept for the coder's feedback (the most recent).
TRACE_CALLS = 24

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
]

# Limit breaches: the call was cut at an arbitrary point (possibly inside an env step), so the
# env state is not trusted any more and the episode ends as a failure.
BREACH_KINDS: frozenset[str] = frozenset({"timeout", "cpu", "memory", "recursion", "killed"})

# Names generated code may never mention: they reach interpreter internals, files or
# dynamic code, or are reflective enough to walk to them.
FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "open",
        "globals",
        "locals",
        "vars",
        "dir",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "__import__",
        "input",
        "breakpoint",
        "help",
        "memoryview",
        "type",
        "object",
        "super",
        "print",
        "exit",
        "quit",
    }
)

# str.format / format_map resolve `{0.attr}` fields at run time, which would bypass the
# static attribute check; f-strings are checked like any expression instead.
# `cell_contents` reads a closure cell; `tofile`/`dump`/`ctypes` are numpy's file and raw
# memory doors (skill results are converted to plain Python values, this is a second fence).
FORBIDDEN_ATTRIBUTES: frozenset[str] = frozenset(
    {"format", "format_map", "mro", "cell_contents", "tofile", "dump", "dumps", "ctypes"}
)

# Frame, code, generator and traceback attributes lead from a generator expression to the
# frames (and globals) of the caller.
FORBIDDEN_ATTRIBUTE_PREFIXES: tuple[str, ...] = ("f_", "gi_", "cr_", "ag_", "co_", "tb_")

MAX_EXPONENT = 64

_FORBIDDEN_NODES: dict[type[ast.AST], str] = {
    ast.Import: "import",
    ast.ImportFrom: "import",
    ast.Try: "try",
    ast.TryStar: "try",
    ast.With: "with",
    ast.AsyncWith: "async with",
    ast.ClassDef: "class",
    ast.Lambda: "lambda",
    ast.Global: "global",
    ast.Nonlocal: "nonlocal",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.AsyncFunctionDef: "async def",
    ast.AsyncFor: "async for",
    ast.Await: "await",
}

SAFE_BUILTINS: dict[str, Any] = {
    "len": len,
    "range": range,
    "min": min,
    "max": max,
    "abs": abs,
    "sum": sum,
    "any": any,
    "all": all,
    "enumerate": enumerate,
    "zip": zip,
    "sorted": sorted,
    "reversed": reversed,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "round": round,
    "True": True,
    "False": False,
    "None": None,
}


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


@dataclass
class CodeAction:
    """A loaded code action: its source and the functions defined by it."""

    name: str
    source: str
    run: Callable[[Any], Any]
    available: Callable[[Any], Any] | None
    filename: str
    skill_names: tuple[str, ...]
    # (proxy, slot, API type): one proxy per action, re-pointed at each call's API.
    proxy_cache: tuple[SimpleNamespace, list[Any], type] | None = field(default=None, repr=False)
    # The most recent skill calls of the current call: (skill, args, result), for feedback.
    calls: deque[tuple[str, tuple[Any, ...], dict[str, Any], str]] = field(
        default_factory=lambda: deque(maxlen=TRACE_CALLS), repr=False
    )


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


def _reject(message: str, node: ast.AST | None = None) -> CodeActionRejected:
    return CodeActionRejected("static", message, getattr(node, "lineno", None))


def _api_names(tree: ast.Module) -> set[str]:
    """The names under which the skill API is reachable: `api` and run/available's first param."""
    names = {"api"}
    for node in tree.body:
        if (
            isinstance(node, ast.FunctionDef)
            and node.name in ("run", "available")
            and node.args.args
        ):
            names.add(node.args.args[0].arg)
    return names


def _is_literal(node: ast.AST | None) -> bool:
    """A constant or a display (tuple/list/set/dict) of literals: evaluates instantly."""
    if node is None or isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(_is_literal(k) for k in node.keys) and all(_is_literal(v) for v in node.values)
    return False


def _check_signature(node: ast.FunctionDef) -> None:
    """Everything evaluated when a `def` runs (defaults, annotations) must be instant."""
    if node.decorator_list:
        raise _reject("decorators are not allowed in code actions", node)
    args = node.args
    for default in [*args.defaults, *args.kw_defaults]:
        if not _is_literal(default):
            raise _reject("default values must be literal constants", default or node)
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    annotations: list[ast.expr | None] = [a.annotation for a in every]
    annotations.append(node.returns)
    for annotation in annotations:
        if annotation is not None and not isinstance(
            annotation, ast.Name | ast.Constant | ast.Attribute | ast.Subscript
        ):
            raise _reject("annotations must be plain type names", annotation)
        if annotation is not None and any(isinstance(n, ast.Call) for n in ast.walk(annotation)):
            raise _reject("annotations may not call functions", annotation)


def _check_top_level(tree: ast.Module) -> None:
    """Module level may only define functions and literal constants, so loading is instant."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            _check_signature(node)
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign):
            value = node.value
            if value is not None and any(isinstance(n, ast.Call) for n in ast.walk(value)):
                raise _reject("module-level assignments may not call functions", node)
            if not _is_literal(value):
                raise _reject("module-level assignments must be literal constants", node)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if not all(isinstance(t, ast.Name) for t in targets):
                raise _reject("module-level assignments must bind plain names", node)
            continue
        raise _reject(
            f"only functions and constants are allowed at module level, "
            f"found {type(node).__name__}",
            node,
        )


def check_code(
    source: str, skill_names: Collection[str], limits: SandboxLimits | None = None
) -> None:
    """Statically check generated code; raises CodeActionRejected(kind="static") when refused.

    Refused: imports, names or attributes starting with `_` (the bare `_` throwaway
    variable is allowed), reflective or I/O builtins, frame/code/cell/numpy-file attributes,
    attribute assignment, try/with/class/lambda/global/nonlocal/yield/async, decorators,
    attributes of the API that are not skills, `**`/`<<` with a non-constant or large right
    operand, module-level code other than functions and literal constants, non-literal
    defaults, a missing `run`, syntax errors and oversized sources.

    Args:
        source: Python source defining `run(api)` and optionally `available(api)`.
        skill_names: Skill-API method names the code may call.
        limits: Size limit source; the defaults when None.
    """
    limits = limits or SandboxLimits()
    if len(source) > limits.max_source_chars:
        raise _reject(f"source is {len(source)} characters; the limit is {limits.max_source_chars}")
    try:
        tree = ast.parse(source, filename="<code_action>", mode="exec")
    except SyntaxError as exc:
        raise CodeActionRejected("static", f"syntax error: {exc.msg}", exc.lineno) from None
    skills = set(skill_names)
    api_names = _api_names(tree)
    for node in ast.walk(tree):
        for node_type, label in _FORBIDDEN_NODES.items():
            if isinstance(node, node_type):
                raise _reject(f"`{label}` is not allowed in code actions", node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow | ast.LShift):
            # A huge power or shift runs inside one C call, which no alarm can interrupt.
            right = node.right
            small = (
                isinstance(right, ast.Constant)
                and isinstance(right.value, int | float)
                and not isinstance(right.value, bool)
                and abs(right.value) <= MAX_EXPONENT
            )
            if not small:
                raise _reject(
                    f"`**` and `<<` need a constant right operand of at most {MAX_EXPONENT}", node
                )
        if isinstance(node, ast.Name):
            if node.id.startswith("_") and node.id != "_":
                raise _reject(f"names starting with '_' are not allowed: {node.id}", node)
            if node.id in FORBIDDEN_NAMES:
                raise _reject(f"`{node.id}` is not available in code actions", node)
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise _reject(f"attributes starting with '_' are not allowed: {node.attr}", node)
            if node.attr in FORBIDDEN_ATTRIBUTES:
                raise _reject(f"`.{node.attr}` is not allowed (use an f-string to format)", node)
            if node.attr.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES):
                raise _reject(f"frame and code attributes are not allowed: {node.attr}", node)
            if not isinstance(node.ctx, ast.Load):
                # Attribute stores would let a call keep state on its functions or the API.
                raise _reject(f"assigning or deleting attributes is not allowed: {node.attr}", node)
            if (
                isinstance(node.value, ast.Name)
                and node.value.id in api_names
                and node.attr not in skills
            ):
                raise _reject(
                    f"api.{node.attr} is not a skill; available: {', '.join(sorted(skills))}",
                    node,
                )
        elif isinstance(node, ast.FunctionDef | ast.arg | ast.alias):
            name = node.name if isinstance(node, ast.FunctionDef | ast.alias) else node.arg
            if name.startswith("_") and name != "_":
                raise _reject(f"names starting with '_' are not allowed: {name}", node)
            if name in FORBIDDEN_NAMES:
                raise _reject(f"`{name}` may not be redefined", node)
        elif isinstance(node, ast.MatchClass):
            # `case str(__class__=c)` reads attributes without an attribute expression.
            for attr in node.kwd_attrs:
                if attr.startswith("_") or attr in FORBIDDEN_ATTRIBUTES:
                    raise _reject(f"class patterns may not read `{attr}`", node)
                if attr.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES):
                    raise _reject(f"frame and code attributes are not allowed: {attr}", node)
        elif (
            isinstance(node, ast.MatchAs | ast.MatchStar)
            and node.name is not None
            and (node.name.startswith("_") or node.name in FORBIDDEN_NAMES)
        ):
            raise _reject(f"`{node.name}` may not be bound", node)
    _check_top_level(tree)
    if not any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
        raise _reject("the code must define `def run(api):` at module level")


def defines_available(source: str) -> bool:
    """True when the source defines a module-level `available` (the action can be masked)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == "available" for n in tree.body)


def load_code_action(
    name: str, source: str, skill_names: Collection[str], limits: SandboxLimits | None = None
) -> CodeAction:
    """Check, compile and execute the source in a restricted namespace.

    Args:
        name: Action name (used in the code's filename for tracebacks).
        source: Python source of the code action.
        skill_names: Skill-API method names the code may call.
        limits: Sandbox limits (source size).

    Returns:
        The loaded action with its `run` and optional `available` functions.

    Raises:
        CodeActionRejected: When the static check fails or module-level code raises.
    """
    check_code(source, skill_names, limits)
    filename = f"<code_action:{name}>"
    code: CodeType = compile(source, filename, "exec", dont_inherit=True)
    namespace: dict[str, Any] = {"__builtins__": dict(SAFE_BUILTINS), "__name__": name}
    try:
        exec(code, namespace)  # restricted globals; only checked, call-free module code runs
    except Exception as exc:  # module-level code of generated source
        line = _line_in(exc.__traceback__, filename)
        raise CodeActionRejected("static", f"{type(exc).__name__}: {exc}", line) from None
    # Module constants and defaults become immutable, so no call leaves state for the next.
    for key, value in list(namespace.items()):
        if key == "__builtins__":
            continue
        if callable(value) and hasattr(value, "__defaults__"):
            value.__defaults__ = _freeze(value.__defaults__)
            value.__kwdefaults__ = _freeze(value.__kwdefaults__)
        else:
            namespace[key] = _freeze(value)
    run = namespace.get("run")
    available = namespace.get("available")
    if not callable(run):
        raise CodeActionRejected("static", "`run` is not a function")
    return CodeAction(
        name=name,
        source=source,
        run=run,
        available=available if callable(available) else None,
        filename=filename,
        skill_names=tuple(skill_names),
    )


def _freeze(value: Any) -> Any:
    """Immutable copy of a literal value: tuples, frozensets and read-only mappings."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


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


def _build_proxy(
    api: Any,
    skill_names: Collection[str],
    calls: deque[tuple[str, tuple[Any, ...], dict[str, Any], str]] | None = None,
) -> tuple[SimpleNamespace, list[Any]]:
    """A proxy of the skill methods and the one-item slot holding the API it forwards to;
    with `calls`, each skill call is recorded there as (skill, arguments, result)."""
    slot: list[Any] = [None]

    def forward(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if calls is None:
                return plain_value(getattr(slot[0], name)(*args, **kwargs))
            try:
                value = plain_value(getattr(slot[0], name)(*args, **kwargs))
            except BaseException as exc:
                calls.append((name, args, kwargs, f"raised {type(exc).__name__}"))
                raise
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
    proxy, slot = _build_proxy(api, skill_names)
    slot[0] = api
    return proxy


class _Timeout(BaseException):
    """Raised by the wall-time alarm; a BaseException so nothing in the call can swallow it."""

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.line = line


class _CpuLimit(_Timeout):
    """Raised by SIGPROF (the per-call CPU timer) inside a worker."""


@dataclass
class _WorkerGuard:
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
        return {
            "pid": os.getpid(),
            "baseline_mb": round(self.baseline_mb, 1),
            "memory_limit_mb": self.memory_limit_mb,
            "report_fd": self.report_fd,
        }


_WORKER: _WorkerGuard | None = None
# The hard stop: ITIMER_VIRTUAL (user CPU of the call) -> SIGVTALRM, dumped by faulthandler
# without needing the GIL, then the signal's default action ends the process.
_HARD_STOP_SIGNAL = signal.SIGVTALRM
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
            raise _Timeout(_frame_line(frame, guard.filename))
        if guard.cpu_deadline is not None and time.process_time() > guard.cpu_deadline:
            guard.active = False
            raise _CpuLimit(_frame_line(frame, guard.filename))
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
    faulthandler.register(_HARD_STOP_SIGNAL, file=fd, all_threads=True, chain=True)
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
    _WORKER = _WorkerGuard(
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


def hard_stop_seconds(limits: SandboxLimits) -> float:
    """User-CPU seconds of one call after which its worker is ended."""
    return float(limits.cpu_seconds + limits.hard_stop_grace_seconds)


def _call_in_worker(
    guard: _WorkerGuard,
    function: Callable[[Any], Any],
    proxy: Any,
    limits: SandboxLimits,
    seconds: float,
    filename: str,
) -> Any:
    """The worker's call: sets the deadlines the periodic ticks enforce (no system call).

    Raises _Timeout / _CpuLimit (with the running line) from the tick handler.
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


def _line_in(tb: TracebackType | None, filename: str) -> int | None:
    """The innermost line of a traceback that lies inside the generated code."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _frame_line(frame: FrameType | None, filename: str) -> int | None:
    """The innermost line of a live stack that lies inside the generated code."""
    while frame is not None:
        if frame.f_code.co_filename == filename:
            return frame.f_lineno
        frame = frame.f_back
    return None


def _stack_depth() -> int:
    depth = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


@contextmanager
def _wall_time_limit(seconds: float, filename: str) -> Iterator[None]:
    """Raise _Timeout after `seconds`, via SIGALRM in a main thread, else via a line tracer.

    The exception carries the line of generated code that was running at the timeout. Any
    previous SIGALRM handler and its pending timer (e.g. a test-runner timeout) are restored
    afterwards. Used outside worker mode (workers keep their handlers installed).
    """
    deadline = time.monotonic() + seconds
    if threading.current_thread() is threading.main_thread():

        def on_alarm(signum: int, frame: FrameType | None) -> None:
            raise _Timeout(_frame_line(frame, filename))

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
            raise _Timeout(frame.f_lineno)
        return tracer

    previous_trace = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous_trace)


def _error(kind: ErrorKind, message: str, line: int | None, step: int, name: str) -> dict[str, Any]:
    return {"kind": kind, "message": message, "line": line, "step": step, "action": name}


def _clip(message: str, limit: int) -> str:
    """Bound a message (an exception may carry a huge value) before it leaves the call."""
    if len(message) <= limit:
        return message
    return f"{message[: max(limit - 40, 0)]}... [{len(message) - limit + 40} more characters]"


def _describe(exc: BaseException, limit: int) -> str:
    """`Type: message`, clipped; formatting the exception itself may fail or be huge."""
    try:
        text = str(exc)
    except BaseException:  # str() of generated values may raise anything
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
        proxy, slot = _build_proxy(api, action.skill_names, action.calls)
        if cached is None:
            action.proxy_cache = (proxy, slot, type(api))
    slot[0] = api
    old_limit = sys.getrecursionlimit()
    filename = action.filename
    counted = steps_used or (lambda: 0)
    name = action.name
    clip = limits.max_message_chars
    try:
        sys.setrecursionlimit(_stack_depth() + limits.recursion_depth)
        guard = _WORKER
        if guard is not None and guard.main_ident == threading.get_ident():
            value = _call_in_worker(guard, function, proxy, limits, seconds, filename)
        else:
            with _wall_time_limit(seconds, filename):
                value = function(proxy)
        return value, None, None
    except _CpuLimit as exc:
        message = f"CPU-time limit of {limits.cpu_seconds:g} s exceeded"
        return None, _error("cpu", message, exc.line, counted(), name), None
    except _Timeout as exc:
        message = f"wall-time limit of {seconds:g} s exceeded"
        return None, _error("timeout", message, exc.line, counted(), name), None
    except OptionInterrupted as exc:
        if exc.reason == "episode_end":
            return None, None, "episode_end"
        line = _line_in(exc.__traceback__, filename)
        if exc.reason == "time_budget":
            err = _error("timeout", "time budget of the option spent", line, counted(), name)
            return None, err, exc.reason
        message = f"step budget of {limits.max_steps} env steps spent"
        return None, _error("step_budget", message, line, counted(), name), exc.reason
    except RecursionError as exc:
        line = _line_in(exc.__traceback__, filename)
        message = f"recursion deeper than {limits.recursion_depth} frames"
        return None, _error("recursion", message, line, counted(), name), None
    except MemoryError as exc:
        line = _line_in(exc.__traceback__, filename)
        guard = _WORKER
        if guard is not None and guard.memory_limit_mb is not None:
            message = (
                f"memory limit exceeded: the worker may use {limits.memory_mb} MiB above its "
                f"baseline ({_describe(exc, 200)})"
            )
        else:
            message = f"out of memory ({_describe(exc, 200)})"
        return None, _error("memory", message, line, counted(), name), None
    except Exception as exc:  # generated code may raise anything; it becomes a structured error
        line = _line_in(exc.__traceback__, filename)
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
    report: str, exitcode: int | None, limits: SandboxLimits | None = None
) -> dict[str, Any]:
    """The structured error for a worker that died while running code.

    Args:
        report: What the worker wrote to its report channel (the hard stop's traceback).
        exitcode: `multiprocessing.Process.exitcode` (negative: killed by that signal).
        limits: The limits the worker ran under (for the message).

    Returns:
        kind (`cpu` for the hard CPU stop, `memory` for the kernel's OOM kill, else
        `killed`), message, line and action (from the innermost code-action frame of the
        report), step (None: the count died with the worker).
    """
    limits = limits or SandboxLimits()
    match = _REPORT_FRAME.search(report)
    line = int(match.group("line")) if match else None
    action = match.group("name") if match else None
    signum = -exitcode if exitcode is not None and exitcode < 0 else None
    signame = signal.Signals(signum).name if signum else None
    kind: ErrorKind = "killed"
    if signum == _HARD_STOP_SIGNAL:
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
    return {"kind": kind, "message": message, "line": line, "step": None, "action": action}
