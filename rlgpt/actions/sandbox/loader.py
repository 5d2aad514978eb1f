"""Loading a checked code action into a restricted namespace."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import CodeType, MappingProxyType, SimpleNamespace
from typing import Any

from rlgpt.actions.sandbox.errors import CodeActionRejected, traceback_line
from rlgpt.actions.sandbox.limits import SandboxLimits
from rlgpt.actions.sandbox.policy import check_code
from rlgpt.actions.sandbox.proxy import TRACE_CALLS

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
        line = traceback_line(exc.__traceback__, filename)
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
