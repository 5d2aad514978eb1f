"""Rollouts in a worker process: code-action checks and plan evaluations with Crafter scores."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgpt.envs.base import Predicate
from rlgpt.logging import get_logger
from rlgpt.tools.sandbox import CodeActionRejected, SandboxLimits, check_code
from rlgpt.tools.sandbox_worker import WorkerDied, run_in_worker, send_partial

log = get_logger("rlgpt.evaluate")

MAX_GIF_FRAMES = 400
GIF_SIZE = 192


class EvaluationError(RuntimeError):
    """The evaluation worker died or timed out (its message says which)."""


def _in_worker(
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


def _predicate(value: Predicate | Mapping[str, Any] | None) -> Predicate | None:
    if value is None or isinstance(value, Predicate):
        return value
    return Predicate.model_validate(dict(value))


def crafter_score(rates: Mapping[str, float]) -> float:
    """Crafter score `exp(mean(ln(1 + s_i))) - 1`, s_i = success percentage of achievement i."""
    from rlgpt.envs.crafter import ACHIEVEMENTS

    percents = np.array([100.0 * float(rates.get(a, 0.0)) for a in ACHIEVEMENTS])
    return float(np.exp(np.mean(np.log1p(percents))) - 1.0)


def _skill_names() -> list[str]:
    from rlgpt.envs.options import default_skill_names

    return default_skill_names()


# ----------------------------------------------------------- code-action check
def check_code_action(
    source: str,
    name: str,
    predicate: Predicate | Mapping[str, Any] | None,
    library_dir: str | Path | None = None,
    prelude: Sequence[str] = (),
    seeds: Sequence[int] = (0, 1, 2),
    limits: SandboxLimits | None = None,
    episode_length: int = 1000,
    privileged: bool = False,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Check a new code action on real episodes: prelude actions first, then one call.

    Args:
        source: The code action's Python source.
        name: Its name.
        predicate: Success condition checked after the call.
        library_dir: Library holding the prelude actions.
        prelude: Library actions run before the code action (earlier plan steps).
        seeds: One episode per seed.
        limits: Sandbox limits of the call.
        episode_length: Env steps per episode.
        privileged: Let skills read the full world map.
        timeout: Seconds for the whole check (None = no limit).

    Returns:
        success_rate, successes, episodes, mean_steps, returned_true_rate, errors (each a
        structured error dict with its seed) and per-episode results.
    """
    limits = limits or SandboxLimits()
    seeds = [int(s) for s in seeds]
    try:
        check_code(source, _skill_names(), limits)
    except CodeActionRejected as exc:
        error = {**exc.as_dict(), "action": name, "seed": None}
        return {
            "success_rate": 0.0,
            "successes": 0,
            "episodes": 0,
            "mean_steps": 0.0,
            "returned_true_rate": 0.0,
            "errors": [error],
            "results": [],
        }
    pred = _predicate(predicate)
    started: list[int] = []
    try:
        return dict(
            _in_worker(
                _check_worker,
                {
                    "source": source,
                    "name": name,
                    "predicate": pred.model_dump() if pred else None,
                    "library_dir": str(library_dir) if library_dir else None,
                    "prelude": list(prelude),
                    "seeds": seeds,
                    "limits": limits.as_dict(),
                    "episode_length": episode_length,
                    "privileged": privileged,
                },
                timeout,
                limits,
                started.append,
            )
        )
    except WorkerDied as exc:
        # The code stopped its worker (hard CPU stop, crash): a precise error, not a crash.
        seed = started[-1] if started else None
        return {
            "success_rate": 0.0,
            "successes": 0,
            "episodes": len(seeds),
            "mean_steps": 0.0,
            "returned_true_rate": 0.0,
            "errors": [{**exc.error, "action": name, "seed": seed}],
            "results": [],
        }
    except Exception as exc:  # timeout, missing prelude action, load failure
        message = f"{type(exc).__name__}: {exc}"
        kind = "runtime"
        if isinstance(exc, EvaluationError):
            message = str(exc)
        elif isinstance(exc, CodeActionRejected):
            message, kind = exc.message, exc.kind
        error = {"kind": kind, "message": message, "line": getattr(exc, "line", None), "step": 0}
        return {
            "success_rate": 0.0,
            "successes": 0,
            "episodes": len(seeds),
            "mean_steps": 0.0,
            "returned_true_rate": 0.0,
            "errors": [{**error, "action": name, "seed": None}],
            "results": [],
        }


def _make_options_env(
    library_dir: str | None,
    prelude: Sequence[str],
    limits: SandboxLimits,
    episode_length: int,
    privileged: bool,
    task: str | None = None,
    pixel_size: int = 64,
) -> Any:
    from rlgpt.envs.crafter import SCORE_TASK, CrafterConfig, CrafterEnv, get_task
    from rlgpt.envs.options import OptionsEnv

    task_name = SCORE_TASK
    if task is not None:
        try:
            get_task(task)
            task_name = task
        except ValueError:
            task_name = SCORE_TASK
    config = CrafterConfig(
        task=task_name,
        episode_length=episode_length,
        privileged=privileged,
        terminate_on_success=False,
        pixel_size=pixel_size,
    )
    return OptionsEnv(CrafterEnv(config), library_dir, (), limits=limits, prelude=prelude)


def _check_worker(
    source: str,
    name: str,
    predicate: dict[str, Any] | None,
    library_dir: str | None,
    prelude: list[str],
    seeds: list[int],
    limits: dict[str, Any],
    episode_length: int,
    privileged: bool,
) -> dict[str, Any]:
    from rlgpt.tools.sandbox import load_code_action

    sandbox = SandboxLimits(**limits)
    pred = _predicate(predicate)
    env = _make_options_env(library_dir, prelude, sandbox, episode_length, privileged)
    action = load_code_action(name, source, env.skill_names, sandbox)
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for seed in seeds:
        send_partial(seed)
        _, info = env.reset(seed=seed)
        prelude_ok = all(r["success"] for r in info.get("prelude", []))
        if env.episode_over:
            results.append({"seed": seed, "success": False, "steps": 0, "prelude_ok": prelude_ok})
            continue
        result = env.run_code(action, sandbox.max_steps)
        holds = pred.holds(env.last_info) if pred is not None else result.success
        for error in result.errors:
            errors.append({**error, "seed": seed})
        record = {
            "seed": seed,
            "success": bool(holds),
            "returned_true": bool(result.success),
            "steps": result.env_steps,
            "prelude_ok": prelude_ok,
            "inventory": _items(env.last_info),
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
        "returned_true_rate": (
            sum(bool(r.get("returned_true")) for r in results) / episodes if episodes else 0.0
        ),
        "errors": errors,
        "results": results,
    }


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


def _items(info: Mapping[str, Any]) -> dict[str, int]:
    """Non-zero inventory entries (a compact trace)."""
    return {k: int(v) for k, v in info.get("inventory", {}).items() if int(v)}


# ---------------------------------------------------------------- plan rollouts
def evaluate_plan(
    task: str,
    steps: Sequence[Mapping[str, Any]],
    library_dir: str | Path | None,
    seeds: Sequence[int],
    max_steps_per_subaction: int = 400,
    episode_length: int = 10_000,
    privileged: bool = False,
    gif_path: str | Path | None = None,
    limits: SandboxLimits | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Roll out a plan on held-out seeds: each sub-action through its library action, in order.

    Args:
        task: Task name (e.g. `crafter:place_table`); task success is its predicate.
        steps: Dicts with `subaction`, `predicate` (Predicate or dict) and `action` (library
            action or primitive name; None when nothing carries the step out).
        library_dir: The action library.
        seeds: One episode per seed.
        max_steps_per_subaction: Env steps each sub-action may take.
        episode_length: Env steps per episode.
        privileged: Let skills read the full world map.
        gif_path: Where to write a GIF of the first episode (None = no GIF).
        limits: Sandbox limits of code-action calls.
        timeout: Seconds for the whole evaluation (None = no limit).

    Returns:
        A dict matching `EvaluationRecord` (the caller sets `iteration`, here 0).
    """
    plain_steps = []
    for step in steps:
        pred = _predicate(step.get("predicate"))
        plain_steps.append(
            {
                "subaction": str(step["subaction"]),
                "predicate": pred.model_dump() if pred else None,
                "action": step.get("action"),
            }
        )
    sandbox = limits or SandboxLimits()
    all_seeds = [int(s) for s in seeds]
    episodes: dict[int, dict[str, Any]] = {}
    progress: dict[str, Any] = {}
    gif_result: str | None = None
    remaining = list(all_seeds)
    gif = str(gif_path) if gif_path else None

    def on_partial(value: Any) -> None:
        if "episode" in value:
            episodes[int(value["episode"]["seed"])] = value["episode"]
        else:
            progress.update(value)

    while remaining:
        progress.clear()
        try:
            out = _in_worker(
                _plan_worker,
                {
                    "task": task,
                    "steps": plain_steps,
                    "library_dir": str(library_dir) if library_dir else None,
                    "seeds": remaining,
                    "max_steps_per_subaction": max_steps_per_subaction,
                    "episode_length": episode_length,
                    "privileged": privileged,
                    "gif_path": gif,
                    "limits": sandbox.as_dict(),
                },
                timeout,
                sandbox,
                on_partial,
            )
            gif_result = out.get("gif_path")
            break
        except WorkerDied as exc:
            # A code action ended the worker: that episode fails, the other seeds still run.
            seed = int(progress.get("seed", remaining[0]))
            episodes[seed] = _dead_episode(seed, progress, exc.error)
            remaining = remaining[remaining.index(seed) + 1 :]
            gif = None
    return _aggregate(task, plain_steps, all_seeds, episodes, gif_result)


def _dead_episode(seed: int, progress: Mapping[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    """The record of an episode whose worker died running a code action."""
    trace = {
        "seed": seed,
        "subaction": progress.get("subaction"),
        "action": progress.get("action") or error.get("action"),
        "reason": "error",
        "errors": [error],
        "error": error,
        "inventory": {},
        "env_steps": int(progress.get("env_steps", 0)),
    }
    return {
        "seed": seed,
        "length": trace["env_steps"],
        "achievements": [],
        "solved": False,
        "sub_ok": list(progress.get("sub_ok", [])),
        "failure": trace,
    }


def _aggregate(
    task: str,
    steps: list[dict[str, Any]],
    seeds: list[int],
    episodes: Mapping[int, dict[str, Any]],
    gif_path: str | None,
) -> dict[str, Any]:
    """The `EvaluationRecord` dict from per-episode records."""
    from rlgpt.envs.crafter import ACHIEVEMENTS

    n = max(len(seeds), 1)
    sub_ok = {s["subaction"]: 0 for s in steps}
    unlocked = dict.fromkeys(ACHIEVEMENTS, 0)
    failures: list[dict[str, Any]] = []
    lengths: list[int] = []
    task_ok = 0
    for seed in seeds:
        episode = episodes.get(seed)
        if episode is None:
            continue
        for name in episode["sub_ok"]:
            if name in sub_ok:
                sub_ok[name] += 1
        for name in episode["achievements"]:
            if name in unlocked:
                unlocked[name] += 1
        if episode["failure"] is not None:
            failures.append(episode["failure"])
        task_ok += int(bool(episode["solved"]))
        lengths.append(int(episode["length"]))
    rates = {name: count / n for name, count in unlocked.items()}
    result: dict[str, Any] = {
        "iteration": 0,
        "episodes": len(seeds),
        "seeds": list(seeds),
        "task_success_rate": task_ok / n,
        "subaction_success": {k: v / n for k, v in sub_ok.items()},
        "achievements": rates,
        "score": crafter_score(rates),
        "mean_length": float(np.mean(lengths)) if lengths else 0.0,
        "failures": failures,
    }
    if gif_path is not None:
        result["gif_path"] = gif_path
    return result


def _plan_worker(
    task: str,
    steps: list[dict[str, Any]],
    library_dir: str | None,
    seeds: list[int],
    max_steps_per_subaction: int,
    episode_length: int,
    privileged: bool,
    gif_path: str | None,
    limits: dict[str, Any],
) -> dict[str, Any]:
    """Roll out the plan on each seed; each finished episode is sent as a partial result."""
    from rlgpt.envs.crafter import get_task

    try:
        spec = get_task(task)
    except ValueError:
        spec = None
    # Symbolic observations: the pixel size only sets the GIF's frame size.
    env = _make_options_env(
        library_dir, (), SandboxLimits(**limits), episode_length, privileged, task, GIF_SIZE
    )
    frames: list[np.ndarray] = []
    for index, seed in enumerate(seeds):
        send_partial({"seed": seed, "subaction": None, "env_steps": 0, "sub_ok": []})
        record = gif_path is not None and index == 0
        env.frame_hook = (lambda: _grab(env, frames)) if record else None
        _, info = env.reset(seed=seed)
        if record:
            _grab(env, frames)
        length = 0
        all_done = True
        done_steps: list[str] = []
        trace: dict[str, Any] | None = None
        for step in steps:
            send_partial({"subaction": step["subaction"], "action": step["action"]})
            pred = _predicate(step["predicate"])
            failure: dict[str, Any] | None = None
            if step["action"] is None:
                failure = {"reason": "no library action carries out this step", "errors": []}
            else:
                try:
                    run = env.run_until(step["action"], pred, max_steps_per_subaction)
                except Exception as exc:  # a broken library entry fails the step, not the run
                    run = {"success": False, "env_steps": 0, "errors": [], "calls": 0}
                    failure = {"reason": f"{type(exc).__name__}: {exc}", "errors": []}
                length += int(run["env_steps"])
                if run["success"]:
                    done_steps.append(step["subaction"])
                    send_partial({"sub_ok": list(done_steps), "env_steps": length})
                    continue
                if failure is None:
                    reason = why_failed(
                        run["returned"], run["last_steps"], run["errors"], env.episode_over
                    )
                    if run["calls"] > 1 and not run["errors"]:
                        reason += f" (called {run['calls']} times, {run['env_steps']} steps)"
                    failure = {"reason": reason, "errors": run["errors"], "trace": run["trace"]}
            all_done = False
            trace = {
                "seed": seed,
                "subaction": step["subaction"],
                "action": step["action"],
                "reason": failure["reason"],
                "errors": failure["errors"][:5],
                "inventory": _items(env.last_info),
                "env_steps": length,
                "trace": failure.get("trace", [])[-12:],
            }
            if failure["errors"]:
                trace["error"] = failure["errors"][0]
            break
        info = env.last_info
        achievements = [n for n, c in info.get("achievements", {}).items() if int(c) > 0]
        solved = spec.solved(info) if spec is not None and not spec.score else all_done
        episode = {
            "seed": seed,
            "length": length,
            "achievements": achievements,
            "solved": bool(solved),
            "sub_ok": done_steps,
            "failure": trace,
        }
        send_partial({"episode": episode})
    env.frame_hook = None
    env.close()
    result: dict[str, Any] = {}
    if gif_path is not None and frames:
        result["gif_path"] = _write_gif(Path(gif_path), frames)
    return result


def _grab(env: Any, frames: list[np.ndarray]) -> None:
    if len(frames) < MAX_GIF_FRAMES:
        frames.append(np.asarray(env.unwrapped.render()))


def _write_gif(path: Path, frames: list[np.ndarray]) -> str:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.gif")
    imageio.mimsave(tmp, list[Any](frames), duration=0.1, loop=0)
    tmp.replace(path)
    return str(path.resolve())


def evaluation_steps(
    plan_steps: Sequence[Mapping[str, Any]], library: Sequence[str]
) -> list[dict[str, Any]]:
    """Helper: plan sub-actions (id, predicate) mapped to same-named library actions."""
    names = set(library)
    return [
        {
            "subaction": s["id"],
            "predicate": s["predicate"],
            "action": s["id"] if s["id"] in names else None,
        }
        for s in plan_steps
    ]


__all__ = [
    "EvaluationError",
    "check_code_action",
    "crafter_score",
    "evaluate_plan",
    "evaluation_steps",
]
