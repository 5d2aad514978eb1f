"""One run of each learning method: PPO (a, b), code actions alone (c), the full loop (d)."""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rlgpt.bench.learning_config import LearningConfig
from rlgpt.bench.score import achievement_rates, crafter_score


def episode_record(info: dict[str, Any], total: int) -> dict[str, Any]:
    """A finished episode from its last info: length, return and achievements unlocked."""
    summary = info.get("episode_summary", {})
    achievements = sorted(n for n, c in info.get("achievements", {}).items() if int(c) > 0)
    return {
        "length": int(summary.get("env_steps", 0)),
        "agent_steps": int(summary.get("agent_steps", 0)),
        "return": round(float(summary.get("return", 0.0)), 3),
        "env_steps_total": total,
        "achievements": achievements,
    }


def run_summary(
    method: str,
    seed: int,
    episodes: list[dict[str, Any]],
    env_steps: int,
    wall: float,
    **extra: Any,
) -> dict[str, Any]:
    """A run's record: its episodes, env steps, speed, achievement rates and Crafter score."""
    rates = achievement_rates(e["achievements"] for e in episodes)
    return {
        "method": method,
        "seed": seed,
        "env_steps": env_steps,
        "wall_time": round(wall, 2),
        "steps_per_second": round(env_steps / max(wall, 1e-9), 1),
        "episodes": len(episodes),
        "achievements": rates,
        "score": crafter_score(rates),
        "episode_results": episodes,
        **extra,
    }


# ------------------------------------------------------------------ (a), (b)
def train_ppo(config: LearningConfig, seed: int, names: list[str], out: Path) -> dict[str, Any]:
    """PPO through the RL pipeline's env and settings, recording achievements per episode."""
    import torch
    from stable_baselines3.common.callbacks import CallbackList

    from rlgpt.tools.rl_callbacks import ProgressReporter, StepBudget, StepCounter
    from rlgpt.tools.rl_pipeline import RLJob, algo_class, make_vec_env, resolve_algo

    torch.set_num_threads(1)
    job = RLJob(
        task="crafter:score",
        library_dir=config.library if names else None,
        action_names=names,
        episode_length=config.episode_length,
        timesteps=config.budget,
        seed=seed,
        n_envs=config.n_envs,
        n_steps=config.n_steps,
        privileged=config.privileged,
        code_action_max_steps=config.code_action_max_steps,
        output_dir=str(out),
        progress_every=max(config.budget // 10, 1000),
    )

    class Recorder(StepCounter):
        """Also keeps the unlocked achievements of every finished episode."""

        def __init__(self) -> None:
            super().__init__()
            self.records: list[dict[str, Any]] = []

        def _record(self, summary: dict[str, Any], info: dict[str, Any]) -> None:
            super()._record(summary, info)
            self.records.append(episode_record(info, self.env_steps))

    # The pipeline's own vec env: code actions run in supervised workers, plain PPO in-process.
    vec_env = make_vec_env(job)
    algo = resolve_algo(job)
    kwargs = job.ppo_kwargs()
    recorder = Recorder()
    started = time.monotonic()
    try:
        model = algo_class(algo)("MlpPolicy", vec_env, **kwargs)
        callbacks = CallbackList(
            [
                recorder,
                ProgressReporter(recorder, f"bench_seed{seed}", job.timesteps, job.progress_every),
                StepBudget(recorder, job.timesteps),
            ]
        )
        model.learn(total_timesteps=job.timesteps, callback=callbacks, progress_bar=False)
    finally:
        vec_env.close()
    wall = time.monotonic() - started
    method = "b" if names else "a"
    return run_summary(
        method,
        seed,
        recorder.records,
        recorder.env_steps,
        wall,
        agent_steps=recorder.agent_steps,
        algo=algo,
        action_names=names,
        code_action_errors=recorder.code_action_errors,
        ppo={k: v for k, v in kwargs.items() if k not in ("seed", "verbose")},
    )


# ----------------------------------------------------------------------- (c)
def _code_only_worker(
    library: str,
    names: list[str],
    budget: int,
    seed: int,
    episode_length: int,
    privileged: bool,
    max_steps: int,
) -> dict[str, Any]:
    """In a worker process: call the code actions in turn until the env-step budget is spent."""
    from rlgpt.actions.build import make_options_env
    from rlgpt.actions.sandbox import SandboxLimits
    from rlgpt.envs.base import EnvSettings, resolve_task

    settings = EnvSettings(episode_length=episode_length, privileged=privileged)
    env = make_options_env(
        "crafter",
        resolve_task("crafter", "crafter:score"),
        settings,
        library=library,
        action_names=names,
        limits=SandboxLimits(max_steps=max_steps),
    )
    started = time.monotonic()
    env.reset(seed=seed)
    total = agent_steps = errors = turn = 0
    episodes: list[dict[str, Any]] = []
    open_episode: dict[str, Any] | None = None
    while total < budget:
        action = env.n_primitives + turn % len(names)
        turn += 1
        _, _, terminated, truncated, info = env.step(action)
        total += int(info["env_steps"])
        agent_steps += 1
        errors += int("code_action_error" in info)
        if terminated or truncated:
            episodes.append(episode_record(info, total))
            env.reset()
            turn = 0
        else:
            open_episode = info
    note = ""
    if not episodes and open_episode is not None:
        # Without one finished episode the rates come from the unfinished last one.
        partial = episode_record(open_episode, total)
        partial["unfinished"] = True
        episodes.append(partial)
        note = "no episode finished within the budget; rates from the unfinished episode"
    env.close()
    return run_summary(
        "c",
        seed,
        episodes,
        total,
        time.monotonic() - started,
        agent_steps=agent_steps,
        action_names=names,
        code_action_errors=errors,
        note=note,
    )


def run_code_actions(config: LearningConfig, seed: int, names: list[str]) -> dict[str, Any]:
    """Method c in a forkserver worker process (see `_code_only_worker`)."""
    from rlgpt.actions.worker import prepare_forkserver

    if config.library is None:
        raise ValueError("method c needs an action library (--library)")
    prepare_forkserver()
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(
            _code_only_worker,
            config.library,
            names,
            config.budget,
            seed,
            config.episode_length,
            config.privileged,
            config.code_action_max_steps,
        )
        return dict(future.result())


# ----------------------------------------------------------------------- (d)
def run_full_loop(config: LearningConfig, seed: int, out: Path) -> dict[str, Any]:
    """The compiled graph with the configured models; its RL jobs get the env-step budget."""
    from rlgpt.graph.builder import builder
    from rlgpt.graph.context import Context

    values: dict[str, Any] = {
        "rl_timesteps": config.budget,
        "seed": seed,
        "privileged": config.privileged,
        "runs_dir": str(out / "runs"),
        "gif": False,
        "code_action_max_steps": config.code_action_max_steps,
        **config.graph_context,
    }
    ctx = Context.from_mapping(values)
    started = time.monotonic()
    final = builder.compile().invoke(
        {"task": config.graph_task}, {"recursion_limit": 200}, context=ctx
    )
    wall = time.monotonic() - started
    run_dir = Path(str(final.get("run_dir", "")))
    rl_runs: list[dict[str, Any]] = []
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        rl_runs = list(json.loads(metrics.read_text()).get("state", {}).get("rl_runs", []))
    evaluations = final.get("evaluations", [])
    last = evaluations[-1] if evaluations else {}
    rates = {k: float(v) for k, v in last.get("achievements", {}).items()}
    env_steps = sum(int(r.get("env_steps", 0)) for r in rl_runs)
    return {
        "method": "d",
        "seed": seed,
        "env_steps": env_steps,
        "wall_time": round(wall, 2),
        "steps_per_second": round(env_steps / max(wall, 1e-9), 1),
        "episodes": int(last.get("episodes", 0)),
        "achievements": achievement_rates([]) | rates,
        "score": crafter_score(achievement_rates([]) | rates),
        "episode_results": [],
        "run_dir": str(run_dir),
        "rl_jobs": len(rl_runs),
        "task": config.graph_task,
        "context": ctx.as_dict(),
        "note": f"{len(rl_runs)} RL job(s); rates over the critic's held-out evaluation "
        "episodes; env steps = RL jobs only",
    }
