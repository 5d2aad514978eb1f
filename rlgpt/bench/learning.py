"""Learning suite: PPO, PPO + code actions, code actions alone and the full loop on Crafter."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlgpt.bench.score import achievement_rates, crafter_score, mean_and_spread
from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.learning")

METHODS: dict[str, str] = {
    "a": "PPO, primitives only",
    "b": "PPO, primitives + code actions",
    "c": "code actions alone (round-robin, no RL)",
    "d": "full planner/coder/RL/critic loop",
}


@dataclass
class LearningConfig:
    """One learning-suite run: budget, seeds, methods and the action library."""

    budget: int = field(
        default=1_000_000,
        metadata={"description": "Env steps per run; every code-action step counts."},
    )
    budget_name: str = field(
        default="full",
        metadata={"description": "Name of the budget shown in reports (quick / full)."},
    )
    seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={"description": "Training seeds; one run per method and seed."},
    )
    methods: list[str] = field(
        default_factory=lambda: ["a", "b", "c"],
        metadata={"description": "Methods to run: a, b, c, d."},
    )
    episode_length: int = field(
        default=10_000,
        metadata={"description": "Env steps per episode (Crafter's standard 10,000)."},
    )
    library: str | None = field(
        default=None, metadata={"description": "Action-library directory for methods b and c."}
    )
    library_origin: str = field(
        default="", metadata={"description": "Where the library comes from (shown in every table)."}
    )
    code_actions: list[str] = field(
        default_factory=list,
        metadata={"description": "Library code actions used; all of them when empty."},
    )
    n_envs: int = field(default=8, metadata={"description": "Envs per PPO run (workers for b)."})
    n_steps: int = field(default=256, metadata={"description": "PPO rollout length per env."})
    privileged: bool = field(
        default=False, metadata={"description": "Let code actions read the full map (reported)."}
    )
    code_action_max_steps: int = field(
        default=300, metadata={"description": "Env-step budget of one code-action call."}
    )
    graph_task: str = field(
        default="crafter:score", metadata={"description": "Task of the full-loop run (method d)."}
    )
    graph_context: dict[str, Any] = field(
        default_factory=dict,
        metadata={"description": "Extra Context fields of the full-loop run (models, loops)."},
    )


def library_origin(library: str | Path) -> str:
    """`rlgpt run <id>` when the library sits in a run directory; else a scripted baseline."""
    root = Path(library).resolve()
    run_dir = root.parent
    if root.name == "library" and (
        (run_dir / "context.json").exists() or (run_dir / "metrics.json").exists()
    ):
        return f"produced by `rlgpt run` {run_dir.name}"
    return "scripted baseline (hand-written library, not produced by the model)"


def code_action_names(library: str | Path, wanted: Sequence[str] = ()) -> list[str]:
    """The library's code actions (all, in name order, or the wanted ones, checked)."""
    from rlgpt.actions.library import ActionLibrary, LibraryError

    lib = ActionLibrary(library)
    code = [e.name for e in lib.entries() if e.kind == "code"]
    if wanted:
        missing = [n for n in wanted if n not in code]
        if missing:
            raise LibraryError(f"no code action(s) {missing} in {library}; code actions: {code}")
        return list(wanted)
    if not code:
        raise LibraryError(f"the library {library} holds no code action")
    return code


def _episode_record(info: dict[str, Any], total: int) -> dict[str, Any]:
    summary = info.get("episode_summary", {})
    achievements = sorted(n for n, c in info.get("achievements", {}).items() if int(c) > 0)
    return {
        "length": int(summary.get("env_steps", 0)),
        "agent_steps": int(summary.get("agent_steps", 0)),
        "return": round(float(summary.get("return", 0.0)), 3),
        "env_steps_total": total,
        "achievements": achievements,
    }


def _summarise(
    method: str,
    seed: int,
    episodes: list[dict[str, Any]],
    env_steps: int,
    wall: float,
    **extra: Any,
) -> dict[str, Any]:
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
def _train(config: LearningConfig, seed: int, names: list[str], out: Path) -> dict[str, Any]:
    """PPO through the RL pipeline's env and settings, recording achievements per episode."""
    import torch

    from rlgpt.tools.rl_pipeline import (
        RLJob,
        RLProgressCallback,
        algo_class,
        make_vec_env,
        resolve_algo,
    )

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

    class Recorder(RLProgressCallback):
        """Also keeps the unlocked achievements of every finished episode."""

        def __init__(self) -> None:
            super().__init__(f"bench_seed{seed}", job.timesteps, job.progress_every)
            self.records: list[dict[str, Any]] = []

        def _on_step(self) -> bool:
            steps_before = self.env_steps
            infos: list[dict[str, Any]] = self.locals.get("infos", [])
            go_on = super()._on_step()
            running = steps_before
            for info in infos:
                running += int(info.get("env_steps", 1))
                if "episode_summary" in info:
                    self.records.append(_episode_record(info, running))
            return go_on

    # The pipeline's own vec env: code actions run in supervised workers, plain PPO in-process.
    vec_env = make_vec_env(job)
    algo = resolve_algo(job)
    kwargs = job.ppo_kwargs()
    recorder = Recorder()
    started = time.monotonic()
    try:
        model = algo_class(algo)("MlpPolicy", vec_env, **kwargs)
        model.learn(total_timesteps=job.timesteps, callback=recorder, progress_bar=False)
    finally:
        vec_env.close()
    wall = time.monotonic() - started
    method = "b" if names else "a"
    return _summarise(
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
            episodes.append(_episode_record(info, total))
            env.reset()
            turn = 0
        else:
            open_episode = info
    note = ""
    if not episodes and open_episode is not None:
        # Without one finished episode the rates come from the unfinished last one.
        partial = _episode_record(open_episode, total)
        partial["unfinished"] = True
        episodes.append(partial)
        note = "no episode finished within the budget; rates from the unfinished episode"
    env.close()
    return _summarise(
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


def _code_only(config: LearningConfig, seed: int, names: list[str]) -> dict[str, Any]:
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
def _full_loop(config: LearningConfig, seed: int, out: Path) -> dict[str, Any]:
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


# ---------------------------------------------------------------------- suite
def run_learning(config: LearningConfig, out: Path) -> dict[str, Any]:
    """Every requested method for every seed; per-method mean and spread of the score.

    Returns:
        `methods`: per method its key, label, runs (raw per-episode results included),
        score mean/std and mean per-achievement rates.
    """
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    names: list[str] = []
    sources: dict[str, str] = {}
    if {"b", "c"} & set(config.methods):
        if config.library is None:
            raise ValueError("methods b and c need an action library: pass --library DIR")
        names = code_action_names(config.library, config.code_actions)
        config.code_actions = names
        config.library_origin = config.library_origin or library_origin(config.library)
        from rlgpt.actions.library import ActionLibrary

        library = ActionLibrary(config.library)
        # The code itself goes into the results: a table is only as honest as its actions.
        sources = {name: library.source(name) for name in names}
    methods: list[dict[str, Any]] = []
    for key in config.methods:
        runs: list[dict[str, Any]] = []
        for seed in config.seeds:
            log.info("bench_learning_run", method=key, seed=seed, budget=config.budget)
            if key == "a":
                run = _train(config, seed, [], out / f"a_seed{seed}")
            elif key == "b":
                run = _train(config, seed, names, out / f"b_seed{seed}")
            elif key == "c":
                run = _code_only(config, seed, names)
            else:
                run = _full_loop(config, seed, out / f"d_seed{seed}")
            log.info(
                "bench_learning_done",
                method=key,
                seed=seed,
                score=round(run["score"], 3),
                episodes=run["episodes"],
                steps_per_second=run["steps_per_second"],
            )
            runs.append(run)
        label = METHODS[key]
        if key in ("b", "c") and "scripted baseline" in config.library_origin:
            label += " [scripted baseline library]"
        methods.append(summarise_method(key, label, config.budget, runs))
    return {"config": {**asdict(config), "library_sources": sources}, "methods": methods}


def summarise_method(key: str, label: str, budget: int, runs: list[dict[str, Any]]) -> dict:
    """One method's table entry: score mean and spread over its runs, mean achievement rates."""
    mean, std = mean_and_spread([r["score"] for r in runs])
    return {
        "key": key,
        "label": label,
        "budget_env_steps": budget,
        "score_mean": mean,
        "score_std": std,
        "achievements_mean": {
            a: sum(r["achievements"][a] for r in runs) / len(runs) for a in runs[0]["achievements"]
        },
        "note": runs[0].get("note", "") if key in ("c", "d") else "",
        "runs": runs,
    }


def merge_learning(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine learning results of one budget (e.g. methods or seeds run in parallel).

    Runs of the same method and label are pooled; the config lists every seed and method and
    keeps each file's own config under `merged_from`.
    """
    if not results:
        raise ValueError("nothing to merge")
    budgets = {r["config"]["budget"] for r in results}
    if len(budgets) != 1:
        raise ValueError(f"cannot merge results of different budgets: {sorted(budgets)}")
    pooled: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        for method in result["methods"]:
            pooled.setdefault((method["key"], method["label"]), []).extend(method["runs"])
    budget = budgets.pop()
    methods = [summarise_method(k, label, budget, runs) for (k, label), runs in pooled.items()]
    config = dict(results[0]["config"])
    for other in results[1:]:
        # The library is the one of the files that used it (b, c), not of a PPO-only file.
        if other["config"].get("library") and not config.get("library"):
            for name in ("library", "library_origin", "code_actions", "library_sources"):
                config[name] = other["config"].get(name)
    config["seeds"] = sorted({s for r in results for s in r["config"]["seeds"]})
    config["methods"] = sorted({m for r in results for m in r["config"]["methods"]})
    config["merged_from"] = [
        {"created": r.get("created"), "git_commit": r.get("git_commit"), "config": r["config"]}
        for r in results
    ]
    return {
        "config": config,
        "methods": methods,
        "wall_time": sum(float(r.get("wall_time", 0.0)) for r in results),
    }
