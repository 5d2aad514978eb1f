"""What code checks and plan evaluations share: the worker call and the account of a failure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from rlgpt.actions.build import make_options_env
from rlgpt.actions.options import OptionsEnv
from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.actions.worker import run_in_worker
from rlgpt.envs.base import EnvSettings, Predicate, TaskSpec


class EvaluationError(RuntimeError):
    """The evaluation worker died or timed out (its message says which)."""


def in_worker(
    function: Callable[..., Any],
    kwargs: dict[str, Any],
    timeout: float | None,
    limits: SandboxLimits | None = None,
    on_partial: Callable[[Any], None] | None = None,
) -> Any:
    """Run `function(**kwargs)` in a fresh worker process; generated code runs only there.

    Raises:
        WorkerDied: The worker ended while running code (its structured error attached).
        EvaluationError: No answer within `timeout` seconds.
    """
    try:
        return run_in_worker(function, kwargs, timeout, limits, on_partial)
    except TimeoutError as exc:
        raise EvaluationError(f"the evaluation took longer than {timeout} s") from exc


def as_predicate(value: Predicate | Mapping[str, Any] | None) -> Predicate | None:
    """A Predicate from a model, its dict, or None."""
    if value is None or isinstance(value, Predicate):
        return value
    return Predicate.model_validate(dict(value))


def rollout_env(
    task: TaskSpec,
    settings: EnvSettings,
    library_dir: str | None,
    prelude: Sequence[str],
    limits: SandboxLimits,
) -> OptionsEnv:
    """The env a check or an evaluation rolls out in: the run's task, never ended by success
    (steps after the goal still count), library actions callable by name."""
    return make_options_env(
        task.env,
        task,
        replace(settings, terminate_on_success=False),
        library=library_dir,
        prelude=prelude,
        limits=limits,
    )


def why_failed(returned: bool | None, steps: int, errors: Sequence[Any], episode_over: bool) -> str:
    """A plain account of why a call of an action did not reach its check."""
    if errors:
        return "error"
    if episode_over:
        return "the episode ended (the player died or time ran out)"
    if returned is None:
        return "the action was never called"
    if steps == 0:
        return f"the action returned {returned} without taking any env step"
    if returned:
        return f"the action returned True after {steps} env steps, but the check does not hold"
    return f"the action returned False after {steps} env steps"


def inventory_items(info: Mapping[str, Any]) -> dict[str, int]:
    """Non-zero inventory entries (a compact trace)."""
    return {k: int(v) for k, v in info.get("inventory", {}).items() if int(v)}
