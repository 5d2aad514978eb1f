"""The code-action check: a new code action called once on real episodes, in a worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgpt.actions.sandbox import CodeActionRejected, SandboxLimits, check_code, load_code_action
from rlgpt.actions.worker import WorkerDied, send_partial
from rlgpt.envs.base import EnvSettings, Predicate, TaskSpec, load_adapter
from rlgpt.tools.rollouts import (
    EvaluationError,
    as_predicate,
    in_worker,
    inventory_items,
    rollout_env,
    why_failed,
)


def check_code_action(
    source: str,
    name: str,
    predicate: Predicate | Mapping[str, Any] | None,
    task: TaskSpec,
    library_dir: str | Path | None = None,
    prelude: Sequence[str] = (),
    seeds: Sequence[int] = (0, 1, 2),
    limits: SandboxLimits | None = None,
    settings: EnvSettings | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Check a new code action on real episodes: prelude actions first, then one call.

    Args:
        source: The code action's Python source.
        name: Its name.
        predicate: Success condition checked after the call.
        task: The run's task (its env plugin builds the episodes).
        library_dir: Library holding the prelude actions.
        prelude: Library actions run before the code action (earlier plan steps).
        seeds: One episode per seed.
        limits: Sandbox limits of the call.
        settings: How the env is built (default: episodes of 1,000 steps).
        timeout: Seconds for the whole check (None = no limit).

    Returns:
        success_rate, successes, episodes, mean_steps, returned_true_rate, errors (each a
        structured error dict with its seed) and per-episode results.
    """
    limits = limits or SandboxLimits()
    seeds = [int(s) for s in seeds]
    try:
        skill_names = [spec.name for spec in load_adapter(task.env).skill_specs()]
        check_code(source, skill_names, limits)
    except CodeActionRejected as exc:
        error = {**exc.as_dict(), "action": name, "seed": None}
        return _no_episodes(0, error)
    pred = as_predicate(predicate)
    started: list[int] = []
    try:
        return dict(
            in_worker(
                _check_worker,
                {
                    "source": source,
                    "name": name,
                    "predicate": pred.model_dump() if pred else None,
                    "library_dir": str(library_dir) if library_dir else None,
                    "prelude": list(prelude),
                    "seeds": seeds,
                    "limits": limits.as_dict(),
                    "task": task,
                    "settings": settings or EnvSettings(episode_length=1000),
                },
                timeout,
                limits,
                started.append,
            )
        )
    except WorkerDied as exc:
        # The code stopped its worker (hard CPU stop, crash): a precise error, not a crash.
        seed = started[-1] if started else None
        return _no_episodes(len(seeds), {**exc.error, "action": name, "seed": seed})
    except Exception as exc:  # timeout, missing prelude action, load failure
        message = f"{type(exc).__name__}: {exc}"
        kind = "runtime"
        if isinstance(exc, EvaluationError):
            message = str(exc)
        elif isinstance(exc, CodeActionRejected):
            message, kind = exc.message, exc.kind
        error = {"kind": kind, "message": message, "line": getattr(exc, "line", None), "step": 0}
        return _no_episodes(len(seeds), {**error, "action": name, "seed": None})


def episode_end_error(name: str, steps: int, trace: Sequence[str]) -> dict[str, Any]:
    """The error of a call the episode's end cut off: `run` never returned (a loop?)."""
    last = f"; its last skill call: {trace[-1]}" if trace else ""
    return {
        "kind": "episode_end",
        "message": f"run() had not returned when the episode ended after {steps} env steps (the "
        f"player died or its time ran out): does it loop without returning?{last}",
        "line": None,
        "step": steps,
        "action": name,
    }


def _no_episodes(episodes: int, error: dict[str, Any]) -> dict[str, Any]:
    """The result of a check that ran no episode to its end: success 0 and the one error."""
    return {
        "success_rate": 0.0,
        "successes": 0,
        "episodes": episodes,
        "mean_steps": 0.0,
        "returned_true_rate": 0.0,
        "errors": [error],
        "results": [],
    }


def _check_worker(
    source: str,
    name: str,
    predicate: dict[str, Any] | None,
    library_dir: str | None,
    prelude: list[str],
    seeds: list[int],
    limits: dict[str, Any],
    task: TaskSpec,
    settings: EnvSettings,
) -> dict[str, Any]:
    sandbox = SandboxLimits(**limits)
    pred = as_predicate(predicate)
    env = rollout_env(task, settings, library_dir, prelude, sandbox)
    action = load_code_action(name, source, env.skill_names, sandbox)
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for seed in seeds:
        send_partial(seed)
        _, info = env.reset(seed=seed)
        prelude_ok = all(r["success"] for r in info.get("prelude", []))
        prelude_steps = int(info.get("prelude_env_steps", 0))
        if env.episode_over:
            results.append(
                {
                    "seed": seed,
                    "success": False,
                    "steps": 0,
                    "prelude_ok": prelude_ok,
                    "prelude_steps": prelude_steps,
                }
            )
            continue
        result = env.run_code(action, sandbox.max_steps)
        holds = pred.holds(env.last_info) if pred is not None else result.success
        if result.interrupted == "episode_end" and not result.errors:
            result.errors.append(episode_end_error(name, result.env_steps, result.trace))
        for error in result.errors:
            errors.append({**error, "seed": seed})
        record: dict[str, Any] = {
            "seed": seed,
            "success": bool(holds),
            "returned_true": bool(result.success),
            "steps": result.env_steps,
            "prelude_ok": prelude_ok,
            "prelude_steps": prelude_steps,
            "interrupted": result.interrupted,
            "inventory": inventory_items(env.last_info),
        }
        if not holds:
            record["reason"] = why_failed(
                result.success, result.env_steps, result.errors, env.episode_over
            )
            record["trace"] = result.trace
        results.append(record)
    env.close()
    successes = sum(r["success"] for r in results)
    episodes = len(results)
    return {
        "success_rate": successes / episodes if episodes else 0.0,
        "successes": successes,
        "episodes": episodes,
        "mean_steps": float(np.mean([r["steps"] for r in results])) if results else 0.0,
        # Every env step of the check, the earlier steps' preludes included.
        "env_steps": sum(int(r["steps"]) + int(r["prelude_steps"]) for r in results),
        "returned_true_rate": (
            sum(bool(r.get("returned_true")) for r in results) / episodes if episodes else 0.0
        ),
        "errors": errors,
        "results": results,
    }
