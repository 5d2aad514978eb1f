"""Plan evaluation: the composed policy rolled out on held-out seeds, in a worker, with scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.actions.worker import WorkerDied, send_partial
from rlgpt.envs.base import EnvSettings, TaskSpec, load_adapter
from rlgpt.files import atomic_target
from rlgpt.tools.rollouts import as_predicate, in_worker, inventory_items, rollout_env, why_failed

MAX_GIF_FRAMES = 400
GIF_SIZE = 192


def evaluate_plan(
    task: TaskSpec,
    steps: Sequence[Mapping[str, Any]],
    library_dir: str | Path | None,
    seeds: Sequence[int],
    max_steps_per_subaction: int = 400,
    settings: EnvSettings | None = None,
    gif_path: str | Path | None = None,
    limits: SandboxLimits | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Roll out a plan on held-out seeds: each sub-action through its library action, in order.

    Args:
        task: The run's task; its env plugin builds the episodes, success is its predicate.
        steps: Dicts with `subaction`, `predicate` (Predicate or dict) and `action` (library
            action or primitive name; None when nothing carries the step out).
        library_dir: The action library.
        seeds: One episode per seed.
        max_steps_per_subaction: Env steps each sub-action may take.
        settings: How the env is built (default: the plugin's defaults).
        gif_path: Where to write a GIF of the first episode (None = no GIF).
        limits: Sandbox limits of code-action calls.
        timeout: Seconds for the whole evaluation (None = no limit).

    Returns:
        A dict matching `EvaluationRecord` (the caller sets `iteration`, here 0).
    """
    episodes, gif = plan_episodes(
        task, steps, library_dir, seeds, max_steps_per_subaction, settings, gif_path, limits,
        timeout,
    )  # fmt: skip
    return aggregate(task, steps, [int(s) for s in seeds], episodes, gif)


def plain_steps(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The plan steps as plain dicts a worker process receives."""
    plain = []
    for step in steps:
        pred = as_predicate(step.get("predicate"))
        plain.append(
            {
                "subaction": str(step["subaction"]),
                "predicate": pred.model_dump() if pred else None,
                "action": step.get("action"),
            }
        )
    return plain


def plan_episodes(
    task: TaskSpec,
    steps: Sequence[Mapping[str, Any]],
    library_dir: str | Path | None,
    seeds: Sequence[int],
    max_steps_per_subaction: int = 400,
    settings: EnvSettings | None = None,
    gif_path: str | Path | None = None,
    limits: SandboxLimits | None = None,
    timeout: float | None = None,
    on_progress: Any = None,
    should_stop: Any = None,
) -> tuple[dict[int, dict[str, Any]], str | None]:
    """The episode record of each seed (see `evaluate_plan`) and the GIF's path, if any.

    Also an executor job: evaluations split over seeds run as several of these.
    """
    sandbox = limits or SandboxLimits()
    episodes: dict[int, dict[str, Any]] = {}
    progress: dict[str, Any] = {}
    gif_result: str | None = None
    remaining = [int(s) for s in seeds]
    gif = str(gif_path) if gif_path else None

    def on_partial(value: Any) -> None:
        if "episode" in value:
            episodes[int(value["episode"]["seed"])] = value["episode"]
        else:
            progress.update(value)

    while remaining:
        progress.clear()
        try:
            out = in_worker(
                _plan_worker,
                {
                    "task": task,
                    "steps": plain_steps(steps),
                    "library_dir": str(library_dir) if library_dir else None,
                    "seeds": remaining,
                    "max_steps_per_subaction": max_steps_per_subaction,
                    "settings": settings or EnvSettings(),
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
    return episodes, gif_result


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


def aggregate(
    task: TaskSpec,
    steps: Sequence[Mapping[str, Any]],
    seeds: list[int],
    episodes: Mapping[int, dict[str, Any]],
    gif_path: str | None,
) -> dict[str, Any]:
    """The `EvaluationRecord` dict from per-episode records."""
    adapter = load_adapter(task.env)
    n = max(len(seeds), 1)
    sub_ok = {s["subaction"]: 0 for s in steps}
    unlocked = dict.fromkeys(adapter.achievements(), 0)
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
        "score": adapter.score(rates),
        "mean_length": float(np.mean(lengths)) if lengths else 0.0,
        "env_steps": sum(lengths),
        "failures": failures,
        "episode_results": [
            {k: episodes[seed][k] for k in ("seed", "length", "achievements", "solved")}
            for seed in seeds
            if seed in episodes
        ],
    }
    if gif_path is not None:
        result["gif_path"] = gif_path
    return result


def _plan_worker(
    task: TaskSpec,
    steps: list[dict[str, Any]],
    library_dir: str | None,
    seeds: list[int],
    max_steps_per_subaction: int,
    settings: EnvSettings,
    gif_path: str | None,
    limits: dict[str, Any],
) -> dict[str, Any]:
    """Roll out the plan on each seed; each finished episode is sent as a partial result."""
    # Symbolic observations: the pixel size only sets the GIF's frame size.
    settings = replace(settings, pixel_size=GIF_SIZE)
    env = rollout_env(task, settings, library_dir, (), SandboxLimits(**limits))
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
            pred = as_predicate(step["predicate"])
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
                "inventory": inventory_items(env.last_info),
                "env_steps": length,
                "trace": failure.get("trace", [])[-12:],
            }
            if failure["errors"]:
                trace["error"] = failure["errors"][0]
            break
        info = env.last_info
        achievements = [n for n, c in info.get("achievements", {}).items() if int(c) > 0]
        solved = all_done if task.score else task.solved(info)
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

    with atomic_target(path) as tmp:
        # The temporary name does not end in .gif: name the format.
        imageio.mimsave(tmp, list[Any](frames), format="GIF", duration=0.1, loop=0)
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
