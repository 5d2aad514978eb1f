"""One run of each learning method: PPO (a, b), the graph (c: code only, d: the full loop) and a
given library's code actions alone (r)."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgpt.bench.learning_config import LearningConfig
from rlgpt.bench.score import achievement_rates, crafter_score
from rlgpt.files import atomic_write_text


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
def curve_episode(record: dict[str, Any]) -> dict[str, Any]:
    """A training episode of the RL pipeline's curve in the suite's episode format."""
    return {
        "length": int(record["length"]),
        "agent_steps": int(record["agent_steps"]),
        "return": round(float(record["return"]), 3),
        "env_steps_total": int(record["env_steps"]),
        "achievements": list(record.get("achievements", [])),
    }


def train_ppo(
    config: LearningConfig,
    seed: int,
    names: list[str],
    algo: str,
    out: Path,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """PPO / MaskablePPO through the RL pipeline, resumable from its checkpoints in `out`.

    Every finished training episode is kept with its unlocked achievements; a run that was
    killed continues from its last checkpoint (policy and episode log) when started again.
    """
    from rlgpt.tools.rl_job import RLJob
    from rlgpt.tools.rl_pipeline import train_policy

    job = RLJob(
        task="crafter:score",
        library_dir=config.library if names else None,
        action_names=names,
        episode_length=config.episode_length,
        timesteps=config.budget,
        seed=seed,
        env_seed=config.env_seed(seed),
        n_envs=config.n_envs,
        n_steps=config.n_steps,
        algo=algo,  # type: ignore[arg-type]
        observation=config.observation,
        privileged=config.privileged,
        code_action_max_steps=config.code_action_max_steps,
        output_dir=str(out),
        checkpoint_every=config.checkpoint_every,
        progress_every=max(config.budget // 20, 1000),
        policy_name="policy",
    )
    result = train_policy(job, on_progress=on_progress)
    curve = json.loads(Path(result.curve_path).read_text())
    return run_summary(
        "b" if names else "a",
        seed,
        [curve_episode(r) for r in curve],
        result.env_steps + result.prelude_env_steps,
        result.wall_time,
        env_seeds=f"{config.env_seed(seed)}+",
        agent_steps=result.agent_steps,
        algo=result.algo,
        observation=config.observation,
        action_names=names,
        resumes=result.resumes,
        wall_time_complete=result.wall_time_complete,
        learn_steps_per_second=result.training_steps_per_second,
        phase_seconds=result.phase_seconds,  # of the last attempt (see RLResult)
        ppo={k: v for k, v in job.ppo_kwargs().items() if k not in ("seed", "verbose", "device")},
    )


# ----------------------------------------------------------------------- (r)
@dataclass
class CodeOnlyLog:
    """Method r's resumable state: its finished episodes and counters, in `out`."""

    out: Path

    def load(self) -> dict[str, Any]:
        """The saved counters and episodes, or a fresh start."""
        path = self.out / "progress.json"
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            data["resumes"] = int(data.get("resumes", 0)) + 1
            return data
        return {"total": 0, "agent_steps": 0, "errors": 0, "wall": 0.0, "resumes": 0,
                "episodes": []}  # fmt: skip

    def save(self, state: dict[str, Any]) -> None:
        """Write the counters and episodes atomically."""
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "progress.json", json.dumps(state))


def _code_only_worker(config: LearningConfig, names: list[str], seed: int, out: str) -> dict:
    """In a worker process: call the code actions in turn until the env-step budget is spent.

    The log is saved after every finished episode; a restarted run keeps those episodes and
    starts its next episode on an unused env seed.
    """
    from rlgpt.actions.build import make_options_env
    from rlgpt.actions.sandbox import SandboxLimits
    from rlgpt.envs.base import EnvSettings, resolve_task

    if config.library is None:
        raise ValueError("method r needs an action library (--library)")
    settings = EnvSettings(episode_length=config.episode_length, privileged=config.privileged)
    env = make_options_env(
        "crafter",
        resolve_task("crafter", "crafter:score"),
        settings,
        library=config.library,
        action_names=names,
        limits=SandboxLimits(max_steps=config.code_action_max_steps),
    )
    progress = CodeOnlyLog(Path(out))
    state = progress.load()
    started = time.monotonic()
    env.reset(seed=config.env_seed(seed) + state["resumes"])
    turn = 0
    open_episode: dict[str, Any] | None = None
    while state["total"] < config.budget:
        action = env.n_primitives + turn % len(names)
        turn += 1
        _, _, terminated, truncated, info = env.step(action)
        state["total"] += int(info["env_steps"])
        state["agent_steps"] += 1
        state["errors"] += int("code_action_error" in info)
        if terminated or truncated:
            state["episodes"].append(episode_record(info, state["total"]))
            state["wall"] += time.monotonic() - started
            started = time.monotonic()
            progress.save(state)
            env.reset()
            turn = 0
        else:
            open_episode = info
    state["wall"] += time.monotonic() - started
    progress.save(state)
    episodes = list(state["episodes"])
    note = ""
    if not episodes and open_episode is not None:
        # Without one finished episode the rates come from the unfinished last one.
        partial = episode_record(open_episode, state["total"])
        partial["unfinished"] = True
        episodes.append(partial)
        note = "no episode finished within the budget; rates from the unfinished episode"
    env.close()
    return run_summary(
        "r",
        seed,
        episodes,
        state["total"],
        state["wall"],
        env_seeds=f"{config.env_seed(seed)}+",
        agent_steps=state["agent_steps"],
        action_names=names,
        code_action_errors=state["errors"],
        resumes=state["resumes"],
        wall_time_complete=True,
        note=note,
    )


def run_code_actions(
    config: LearningConfig, seed: int, names: list[str], out: Path
) -> dict[str, Any]:
    """Method r in a forkserver worker process (see `_code_only_worker`)."""
    from rlgpt.actions.worker import prepare_forkserver

    prepare_forkserver()
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_code_only_worker, config, names, seed, str(out))
        return dict(future.result())


# ------------------------------------------------------------------- (c), (d)
#: What each graph method changes in the run's context.
GRAPH_METHODS: dict[str, dict[str, Any]] = {
    "c": {"allow_rl": False, "final_policy": "code"},
    "d": {},
}


def run_full_loop(config: LearningConfig, seed: int, out: Path, method: str = "d") -> dict:
    """The compiled graph with the configured models under a run-wide env-step budget.

    Every env step the run takes counts: the coder's code checks, the RL jobs with their
    preludes, the critic's evaluations and the final whole-game agent. On an open-ended task
    the rates are those of the final agent's episodes (the standard protocol's rates over
    the episodes of the budget, with the loop's steps spent before them); without a final
    agent, those of the last evaluation's held-out episodes, which stop at the first failed
    sub-action (another protocol, and the row says so). Method c is the same graph with
    every step coded and the plan's actions playing the final episodes (no RL).
    """
    from langchain_core.runnables import RunnableConfig

    from rlgpt.bench.attempt_clock import AttemptClock
    from rlgpt.checkpoint import open_checkpointer
    from rlgpt.graph.builder import builder
    from rlgpt.graph.context import Context

    first = config.env_seed(seed)
    values: dict[str, Any] = {
        "env_step_budget": config.budget,
        "rl_timesteps": config.budget,
        "seed": first,
        "eval_seed": first + config.env_seed_stride // 2,
        "privileged": config.privileged,
        "runs_dir": str(out / "runs"),
        "gif": False,
        "code_action_max_steps": config.code_action_max_steps,
        "final_episode_length": config.episode_length,
        **config.graph_context,
        **GRAPH_METHODS[method],
    }
    ctx = Context.from_mapping(values)
    out.mkdir(parents=True, exist_ok=True)
    # A checkpointed thread: a killed run continues from its last finished node (and its RL
    # job from its last saved policy) when the suite is started again.
    thread = f"{method}_seed{seed}"
    run: RunnableConfig = {"configurable": {"thread_id": thread}, "recursion_limit": 200}
    clock = AttemptClock(out / "attempt_seconds.json")
    with clock, open_checkpointer(str(out / "checkpoints.sqlite")) as saver:
        graph = builder.compile(checkpointer=saver)
        snapshot = graph.get_state(run)
        begun = bool(snapshot.values)
        if begun and not snapshot.next and final_agent_failed(snapshot.values, ctx):
            # A finished thread whose final agent failed: that node runs again from the
            # checkpoint before it (the loop's work is kept).
            before = next(s for s in graph.get_state_history(run) if s.next == ("final_policy",))
            graph.invoke(None, before.config, context=ctx)
        else:
            graph.invoke(None if begun else {"task": config.graph_task}, run, context=ctx)
        snapshot = graph.get_state(run)
        if snapshot.next:
            raise RuntimeError(f"the graph run stopped before its end (at {snapshot.next})")
        final = snapshot.values
        if final_agent_failed(final, ctx):
            errors = [e for e in final.get("errors", []) if e["node"] == "final_policy"]
            why = errors[-1]["message"][:300] if errors else "stopped early"
            raise RuntimeError(
                f"the final agent did not finish ({why}); the same command runs it again"
            )
        wall = clock.total_seconds
    parts = {k: int(v) for k, v in final.get("env_steps", {}).items()}
    used = sum(parts.values())
    episodes, note = graph_episodes(final)
    # Attempts kept their time in the clock's file; a thread begun before the clock was
    # kept has an earlier attempt without it: say so rather than under-report.
    earlier = clock.earlier_attempts
    summary = run_summary(
        method,
        seed,
        episodes,
        used,
        wall,
        resumes=earlier or int(begun),
        wall_time_complete=not begun or earlier > 0,
    )
    rl_runs = list(final.get("rl_runs", []))
    return {
        **summary,
        "env_seeds": f"{first}+ (held-out evaluation {ctx.eval_seed}+)",
        "env_steps_by_part": parts,
        "run_dir": str(final.get("run_dir", "")),
        "rl_jobs": len(rl_runs),
        "evaluations": len(final.get("evaluations", [])),
        "curriculum": [
            {k: r[k] for k in ("round", "targets", "added", "missed")}
            for r in final.get("curriculum", [])
        ],
        "final_actions": (final.get("final_policy") or {}).get("action_names", []),
        "usage": final.get("usage", {}),
        "task": config.graph_task,
        "context": ctx.as_dict(),
        "note": f"{note}; {len(rl_runs)} RL job(s); env steps: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(parts.items())),
    }


def final_agent_failed(values: dict[str, Any], ctx: Any) -> bool:
    """True when an open-ended task's final agent was due but failed or stopped before its
    budget was spent (a budget the loop already spent is no failure: the rates then come
    from the last evaluation)."""
    if not (values.get("task_spec") or {}).get("score") or ctx.final_policy == "none":
        return False
    record = values.get("final_policy")
    if record:
        return bool(record.get("stopped_early"))
    kinds = {e["kind"] for e in values.get("errors", []) if e["node"] == "final_policy"}
    return bool(kinds - {"budget_spent"})


def graph_episodes(final: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The episodes a graph run's rates come from, and where they come from in words."""
    agent = final.get("final_policy")
    if agent:
        kind = "RL policy" if agent["mode"] == "rl" else "plan's code actions"
        episodes = [
            {
                "length": int(e["length"]),
                "env_steps_total": e.get("env_steps_total"),
                "achievements": sorted(e["achievements"]),
            }
            for e in agent["episode_results"]
        ]
        return episodes, (
            f"rates over the {len(episodes)} episodes of the final whole-game agent ({kind}, "
            f"{agent['env_steps']:,} env steps), after the loop's steps"
        )
    evaluations = final.get("evaluations", [])
    last = evaluations[-1] if evaluations else {}
    episodes = [
        {
            "length": int(e["length"]),
            "env_steps_total": None,
            "achievements": sorted(e["achievements"]),
            "seed": int(e["seed"]),
            "solved": bool(e["solved"]),
        }
        for e in last.get("episode_results", [])
    ]
    return episodes, (
        f"rates over the last evaluation's {len(episodes)} held-out episodes (each stops at "
        "its first failed sub-action)"
    )
