"""The final whole-game agent of an open-ended task, after the curriculum's loop.

`rl`: a policy trained on the game's own reward, whose action space is the primitives
plus every action of the plan that passed the critic's last evaluation (code actions and
trained sub-policies), with the env steps the loop left. `code`: the plan's actions alone
play whole episodes with those env steps (the code-only agent). Either way, the achievement
rates over these whole-length episodes are the run's result on the game's standard
protocol (success rates over the episodes of the budget), every earlier env step counted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from langgraph.runtime import Runtime

from rlgpt.cancel import stop_check
from rlgpt.envs.base import EnvSettings, load_adapter
from rlgpt.execution import Job, JobNotStarted, make_executor
from rlgpt.graph.context import Context, context_of
from rlgpt.graph.node_plugins import Role
from rlgpt.graph.review import review_rl_jobs
from rlgpt.graph.schemas import Plan
from rlgpt.graph.state import ActionRecord, EvaluationRecord, FinalPolicyRecord, State, open_ended
from rlgpt.logging import get_logger
from rlgpt.nodes.common import (
    env_steps_left,
    error_record,
    executor_of,
    library_dir,
    plan_of,
    task_of,
)
from rlgpt.nodes.curriculum import last_evaluation
from rlgpt.stream_events import stream_writer
from rlgpt.tools.play import play_plan
from rlgpt.tools.rl_job import RLResult
from rlgpt.tools.rl_pipeline import train_policy

log = get_logger("final_policy")

#: The final agent's folder under the run folder (a stopped job continues there).
FINAL_DIR = "final_policy"
POLICY_NAME = "final_policy"


def passed_actions(
    plan: Plan | None,
    library: dict[str, ActionRecord],
    ev: EvaluationRecord | None,
    threshold: float,
) -> list[str]:
    """Library actions of the plan's steps that reached `threshold` in the evaluation."""
    if plan is None or ev is None:
        return []
    names = []
    for step in plan.sub_actions:
        name = executor_of(step, library)
        if name is not None and ev["subaction_success"].get(step.id, 0.0) >= threshold:
            names.append(name)
    return names


def final_budget(state: State, ctx: Context) -> int:
    """Env steps the final agent gets: what the run's budget has left, else `rl_timesteps`."""
    left = env_steps_left(state, ctx, final=True)
    return ctx.rl_timesteps if left is None else left


def final_agent(state: State, ctx: Context, mode: Literal["rl", "code"]) -> dict[str, Any]:
    """Train (`rl`) or play (`code`) the final whole-game agent; nothing to do on a task
    with a goal."""
    if not open_ended(state):
        return {}
    plan = plan_of(state)
    library = state.get("library", {})
    ev = last_evaluation(state)
    budget = final_budget(state, ctx)
    if budget <= 0:
        message = "the run's env-step budget is spent: no final policy"
        return {"errors": [error_record("final_policy", "budget_spent", message)]}
    out = Path(state["run_dir"]) / FINAL_DIR
    started = time.monotonic()
    if mode == "rl":
        actions = passed_actions(plan, library, ev, ctx.success_threshold)
        return _train(state, ctx, actions, budget, out, started)
    steps = [
        {
            "subaction": s.id,
            "predicate": s.predicate.model_dump(),
            "action": executor_of(s, library),
        }
        for s in (plan.sub_actions if plan is not None else [])
    ]
    return _play(state, ctx, steps, budget, out, started)


class RLFinalPolicy:
    """The final agent as one RL policy over the primitives and the passed actions."""

    role: ClassVar[Role] = "final_policy"
    name: ClassVar[str] = "rl"

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return final_agent(state, context_of(runtime), "rl")


class CodeFinalAgent:
    """The final agent as the plan's code actions alone, playing whole episodes."""

    role: ClassVar[Role] = "final_policy"
    name: ClassVar[str] = "code"

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return final_agent(state, context_of(runtime), "code")


class NoFinalAgent:
    """No final agent: the run's result is its last evaluation."""

    role: ClassVar[Role] = "final_policy"
    name: ClassVar[str] = "none"

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return {}


def _train(
    state: State, ctx: Context, actions: list[str], budget: int, out: Path, started: float
) -> dict[str, Any]:
    """The `rl` final agent: one training job on the task's own reward."""
    review = review_rl_jobs([{"subaction": POLICY_NAME, "timesteps": budget,
                              "code_actions": actions}], ctx)  # fmt: skip
    if review.action == "skip":
        message = "a reviewer skipped the final policy"
        return {"errors": [error_record("final_policy", "skipped", message)]}
    job = ctx.rl_job(
        task=task_of(state).name,
        library_dir=str(library_dir(state)),
        action_names=actions,
        episode_length=ctx.final_episode_length,
        timesteps=min(review.timesteps or budget, budget),
        output_dir=str(out),
        policy_name=POLICY_NAME,
    )
    log.info("final_policy_training", actions=actions, timesteps=job.timesteps)
    value, failed = _run(ctx, Job(POLICY_NAME, train_policy, (job,)))
    if failed is not None:
        return failed
    result: RLResult = value
    curve = json.loads(Path(result.curve_path).read_text())
    episodes = [
        {
            "length": int(r["length"]),
            "env_steps_total": int(r["env_steps"]),
            "return": round(float(r["return"]), 3),
            "achievements": sorted(r.get("achievements", [])),
        }
        for r in curve
    ]
    used = result.env_steps + result.prelude_env_steps
    record = _record(state, "rl", actions, used, episodes, started, result.stopped_early)
    record["policy_path"] = result.policy_path
    record["curve_path"] = result.curve_path
    return {
        "final_policy": record,
        "rl_runs": [result.to_record(POLICY_NAME)],
        "env_steps": {"final_policy": used},
    }


def _play(
    state: State,
    ctx: Context,
    steps: list[dict[str, Any]],
    budget: int,
    out: Path,
    started: float,
) -> dict[str, Any]:
    """The `code` final agent: the plan's actions play whole episodes."""
    settings = EnvSettings(episode_length=ctx.final_episode_length, privileged=ctx.privileged)
    args = (task_of(state), steps, str(library_dir(state)), budget, ctx.seed, settings, str(out),
            ctx.subaction_max_steps, ctx.sandbox_limits())  # fmt: skip
    log.info("final_play", actions=[s["action"] for s in steps], budget=budget)
    value, failed = _run(ctx, Job(POLICY_NAME, play_plan, args))
    if failed is not None:
        return failed
    actions = [s["action"] for s in steps if s["action"] is not None]
    used = int(value["env_steps"])
    stopped = bool(value["stopped_early"])
    record = _record(state, "code", actions, used, value["episodes"], started, stopped)
    return {"final_policy": record, "env_steps": {"final_policy": used}}


def _run(ctx: Context, job: Job) -> tuple[Any, dict[str, Any] | None]:
    """The job's value on the run's executor, or the state update that reports its failure."""
    executor = make_executor(ctx.executor, ctx.ray_address)
    (outcome,) = executor.run([job], on_progress=stream_writer(), should_stop=stop_check())
    if isinstance(outcome.error, JobNotStarted):
        update = {"errors": [error_record("final_policy", "stopped", "the step was stopped")]}
        return None, update
    if outcome.error is not None:
        log.warning("final_policy_failed", error=repr(outcome.error))
        update = {"errors": [error_record("final_policy", "failed", repr(outcome.error))]}
        return None, update
    return outcome.value, None


def _record(
    state: State,
    mode: Any,
    actions: list[str],
    env_steps: int,
    episodes: list[dict[str, Any]],
    started: float,
    stopped: bool,
) -> FinalPolicyRecord:
    """The final agent's record: its episodes' achievement rates and score."""
    adapter = load_adapter(task_of(state).env)
    n = len(episodes)
    rates = {
        name: sum(name in e["achievements"] for e in episodes) / n if n else 0.0
        for name in adapter.achievements()
    }
    log.info("final_policy_done", mode=mode, episodes=n, env_steps=env_steps)
    return FinalPolicyRecord(
        mode=mode,
        action_names=actions,
        env_steps=env_steps,
        episodes=n,
        achievements=rates,
        score=adapter.score(rates),
        episode_results=episodes,
        wall_time=round(time.monotonic() - started, 2),
        stopped_early=stopped,
    )
