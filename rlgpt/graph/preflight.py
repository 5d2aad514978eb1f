"""Preflight: what each chosen plugin needs, checked before a run starts.

A remote model needs its credentials and an endpoint that answers a models-list request
(which costs nothing); the embedded model needs its files and engine; the env needs its
simulator; every node plugin must be installed. The CLI checks before it makes the run
folder, and the graph's `start` node checks again for runs started on the graph server.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from rlgpt.envs.base import load_adapter, unavailable_reason
from rlgpt.execution.ray_cluster import ray_installed
from rlgpt.graph.context import ConfigError, Context
from rlgpt.graph.node_plugins import ROLES as NODE_ROLES
from rlgpt.graph.node_plugins import node_plugin
from rlgpt.llm.backend import resolve_backend
from rlgpt.llm.errors import LLMError
from rlgpt.llm.settings import ROLES as MODEL_ROLES
from rlgpt.llm.settings import LLMSettings
from rlgpt.logging import get_logger

log = get_logger("preflight")

#: A passed model check is trusted this long (a server starts many runs on one model).
PASSED_TTL_SECONDS = 60.0
#: The model that needs nothing but this package, offered as the fix for a remote model.
EMBEDDED_MODEL = "local:qwen2.5-coder-1.5b"

_passed: dict[tuple[int, str], float] = {}
_lock = threading.Lock()


class PreflightError(ConfigError):
    """A chosen plugin cannot work here; each line names the setting, the problem and the fix."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.line() for p in problems))


@dataclass(frozen=True)
class Problem:
    """One setting that cannot work: e.g. `planner_model = openai:gpt-4.1`, and why."""

    setting: str
    value: str
    message: str

    def line(self) -> str:
        """`preflight: <setting> = <value>: <problem and fix>`."""
        return f"preflight: {self.setting} = {self.value}: {self.message}"


def problems(ctx: Context) -> list[Problem]:
    """Everything the run's plugins need and do not have (empty: the run can start)."""
    found: list[Problem] = []
    for role in NODE_ROLES:
        name = getattr(ctx, role)
        try:
            node_plugin(role, name)
        except (LookupError, TypeError) as exc:
            found.append(Problem(role, name, str(exc)))
    try:
        reason = unavailable_reason(load_adapter(ctx.env))
    except LookupError as exc:
        reason = str(exc)
    if reason:
        found.append(Problem("env", ctx.env, reason))
    if ctx.executor == "ray" and not ray_installed():
        found.append(
            Problem(
                "executor",
                "ray",
                "Ray is not installed: pip install 'rlgpt[ray]'; or pass --executor local",
            )
        )
    for role in MODEL_ROLES:
        settings = ctx.llm_settings(role)
        message = _model_problem(settings)
        if message:
            fix = f"; or pass --{role}-model {EMBEDDED_MODEL}"
            if settings.model == EMBEDDED_MODEL:
                fix = ""
            found.append(Problem(f"{role}_model", settings.model, message + fix))
    return found


def check(ctx: Context) -> None:
    """Raise PreflightError naming every problem; return when the run can start."""
    found = problems(ctx)
    if found:
        log.info("preflight_failed", settings=[p.setting for p in found])
        raise PreflightError(found)


def _model_problem(settings: LLMSettings) -> str | None:
    """What the backend of `settings.model` reports missing (cached while it passes)."""
    try:
        backend, model_name = resolve_backend(settings.model)
    except (ValueError, LookupError, TypeError) as exc:
        return str(exc)
    hook: Any = getattr(backend, "preflight", None)
    if not callable(hook):  # a backend without a check is trusted
        return None
    # Credentials and endpoints come from the environment: a changed one is checked again.
    key = (id(backend), f"{model_name}|{settings.timeout}|{hash(frozenset(os.environ.items()))}")
    with _lock:
        if time.monotonic() - _passed.get(key, -PASSED_TTL_SECONDS) < PASSED_TTL_SECONDS:
            return None
    try:
        message: str | None = hook(model_name, settings)
    except LLMError as exc:
        message = exc.message
    if message is None:
        with _lock:
            _passed[key] = time.monotonic()
    return message
