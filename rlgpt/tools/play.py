"""Whole episodes played by a plan's code actions alone (no RL): the code-only agent.

In each episode the agent goes through its plan's steps in order and runs the action of
every step whose check does not hold yet; it goes through them again while a pass gets a
step done, and the episode ends when a pass gets nothing done, the game ends it, or its
length is reached. Episodes are played until an env-step budget is spent; each finished
one is kept in a log, so a stopped run continues where it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.actions.worker import WorkerDied, send_partial
from rlgpt.envs.base import EnvSettings, TaskSpec
from rlgpt.files import atomic_write_text
from rlgpt.logging import get_logger
from rlgpt.tools.evaluate import plain_steps
from rlgpt.tools.rollouts import as_predicate, in_worker, rollout_env

log = get_logger("play")

#: The episode log in the output folder.
LOG_FILE = "episodes.json"


def play_plan(
    task: TaskSpec,
    steps: Sequence[Mapping[str, Any]],
    library_dir: str,
    budget: int,
    first_seed: int,
    settings: EnvSettings,
    out: str,
    max_steps_per_subaction: int = 400,
    limits: SandboxLimits | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Play episodes with the plan's actions until `budget` env steps are spent.

    Args:
        task: The run's task (its env plugin builds the episodes).
        steps: Plan steps: `subaction`, `predicate` and `action` (a library action or None).
        library_dir: The action library.
        budget: Env steps to spend; the last episode stops when it is spent.
        first_seed: Env seed of the first episode; each episode takes the next one.
        settings: How the env is built (`episode_length` ends an episode).
        out: Folder of the episode log; a log found there is continued.
        max_steps_per_subaction: Env steps one step's action may take per call.
        limits: Sandbox limits of code-action calls.
        on_progress: Receives a progress dict after every episode.
        should_stop: Polled between episodes; True ends the play early.

    Returns:
        `episodes` (each with `length`, `env_steps_total`, `achievements`, `seed`), `env_steps`,
        `stopped_early` and `resumed_episodes` (how many came from an earlier attempt).
    """
    path = Path(out) / LOG_FILE
    episodes: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    resumed = len(episodes)
    spent = sum(int(e["length"]) for e in episodes)
    sandbox = limits or SandboxLimits()
    stopped = False
    progress: dict[str, Any] = {}

    def on_partial(value: dict[str, Any]) -> None:
        nonlocal spent
        if "episode" not in value:
            progress.update(value)
            return
        episode = value["episode"]
        spent += int(episode["length"])
        episode["env_steps_total"] = spent
        episodes.append(episode)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(episodes))
        progress.clear()
        if on_progress is not None:
            on_progress({"event": "play_progress", "episodes": len(episodes),
                         "env_steps": spent, "budget": budget})  # fmt: skip

    while spent < budget:
        if should_stop is not None and should_stop():
            stopped = True
            break
        seed = first_seed + len(episodes)
        before = spent
        try:
            in_worker(
                _episodes_worker,
                {
                    "task": task,
                    "steps": plain_steps(steps),
                    "library_dir": library_dir,
                    "first_seed": seed,
                    "episodes": EPISODES_PER_WORKER,
                    "budget": budget - spent,
                    "max_steps_per_subaction": max_steps_per_subaction,
                    "settings": settings,
                    "limits": sandbox.as_dict(),
                },
                None,
                sandbox,
                on_partial,
            )
        except WorkerDied as exc:
            # A code action ended the worker: its episode ends there, the play goes on.
            log.warning("play_worker_died", seed=progress.get("seed"), error=exc.error)
            dead = {
                "seed": int(progress.get("seed", seed)),
                "length": int(progress.get("env_steps", 0)),
                "achievements": list(progress.get("achievements", [])),
                "error": exc.error,
            }
            on_partial({"episode": dead})
        if spent == before:
            # Actions that take no env step would never spend the budget.
            log.warning("play_idle", seed=seed, episodes=len(episodes))
            stopped = True
            break
    return {
        "episodes": episodes,
        "env_steps": spent,
        "stopped_early": stopped,
        "resumed_episodes": resumed,
    }


#: Episodes one worker plays before the caller looks at its stop signal again.
EPISODES_PER_WORKER = 20


def _episodes_worker(
    task: TaskSpec,
    steps: list[dict[str, Any]],
    library_dir: str,
    first_seed: int,
    episodes: int,
    budget: int,
    max_steps_per_subaction: int,
    settings: EnvSettings,
    limits: dict[str, Any],
) -> None:
    """Play up to `episodes` episodes (see the module's docstring) within `budget` env
    steps, in a worker; each finished one is sent as a partial result."""
    env = rollout_env(task, settings, library_dir, (), SandboxLimits(**limits))
    spent = 0
    for seed in range(first_seed, first_seed + episodes):
        if spent >= budget:
            break
        send_partial({"seed": seed, "env_steps": 0, "achievements": []})
        env.reset(seed=seed)
        length = 0
        calls = 0
        progressed = True
        while progressed and not env.episode_over and spent + length < budget:
            progressed = False
            for step in steps:
                pred = as_predicate(step["predicate"])
                if step["action"] is None or (pred is not None and pred.holds(env.last_info)):
                    continue
                left = min(max_steps_per_subaction, budget - spent - length)
                if left <= 0 or env.episode_over:
                    break
                run = env.run_until(step["action"], pred, left)
                length += int(run["env_steps"])
                calls += int(run["calls"])
                progressed = progressed or bool(run["success"])
                send_partial({"env_steps": length, "achievements": _unlocked(env.last_info)})
        spent += length
        episode = {"seed": seed, "length": length, "achievements": _unlocked(env.last_info),
                   "calls": calls}  # fmt: skip
        send_partial({"episode": episode})
    env.close()


def _unlocked(info: Mapping[str, Any]) -> list[str]:
    return sorted(n for n, c in info.get("achievements", {}).items() if int(c) > 0)
