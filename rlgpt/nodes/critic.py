"""The critic: evaluates the composed policy on held-out seeds and routes the work on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from langgraph.runtime import Runtime

from rlgpt.envs.base import EnvSettings
from rlgpt.execution import Job, LocalExecutor, make_executor
from rlgpt.graph.context import Context, context_of
from rlgpt.graph.node_plugins import Role
from rlgpt.graph.schemas import Plan, Verdict
from rlgpt.graph.state import EvaluationRecord, State, VerdictRecord
from rlgpt.llm import LLMError, ask_structured
from rlgpt.logging import get_logger
from rlgpt.nodes.common import (
    env_steps_left,
    error_record,
    executor_of,
    library_dir,
    plan_of,
    task_of,
)
from rlgpt.nodes.curriculum import on_curriculum, rounds_left
from rlgpt.nodes.prompts import critic_messages, verdict_schema
from rlgpt.nodes.shared_policies import publish_policies
from rlgpt.tools.evaluate import aggregate, plan_episodes

log = get_logger("critic")


#: Episodes per job when an evaluation on Ray is split over seeds (smaller ones run whole).
EVAL_EPISODES_PER_JOB = 10


def evaluate(state: State, ctx: Context, plan: Plan) -> EvaluationRecord:
    """Roll out the composed policy (each step's action in plan order) on held-out seeds.

    On Ray, an evaluation of more than `EVAL_EPISODES_PER_JOB` episodes is split into jobs
    of that many seeds, which run at once; the result is the same as in one piece.
    """
    library = state.get("library", {})
    iteration = len(state.get("evaluations", [])) + 1
    seeds = list(range(ctx.eval_seed, ctx.eval_seed + ctx.eval_episodes))
    steps = [
        {
            "subaction": s.id,
            "predicate": s.predicate.model_dump(),
            "action": executor_of(s, library),
        }
        for s in plan.sub_actions
    ]
    gif = Path(state["run_dir"]) / f"eval_{iteration}.gif" if ctx.gif else None
    task = task_of(state)
    settings = EnvSettings(
        episode_length=ctx.subaction_max_steps * len(steps), privileged=ctx.privileged
    )
    size = len(seeds) if ctx.executor == "local" else EVAL_EPISODES_PER_JOB
    jobs = []
    for k in range(0, len(seeds), size):
        part = (
            task,
            steps,
            str(library_dir(state)),
            seeds[k : k + size],
            ctx.subaction_max_steps,
            settings,
            gif if k == 0 else None,  # the GIF shows the first episode
            ctx.sandbox_limits(),
        )
        jobs.append(Job(f"eval_{iteration}_{k // size}", plan_episodes, part))
    executor = make_executor(ctx.executor, ctx.ray_address) if len(jobs) > 1 else LocalExecutor()
    episodes: dict[int, dict[str, Any]] = {}
    gif_written: str | None = None
    for outcome in executor.run(jobs):
        if outcome.error is not None:
            raise outcome.error
        found, found_gif = outcome.value
        episodes.update(found)
        gif_written = gif_written or found_gif
    result = aggregate(task, steps, seeds, episodes, gif_written)
    result["iteration"] = iteration
    return EvaluationRecord(**result)  # type: ignore[typeddict-item]


def rules_verdict(
    state: State, ctx: Context, plan: Plan | None, ev: EvaluationRecord | None
) -> VerdictRecord:
    """Routing by thresholds and budgets alone; also the guard around a model's verdict.

    On a curriculum (an open-ended task), a plan whose every step passes goes back to the
    planner for the next round, and the rounds left take the place of the outer loops.
    """
    inner_left = state.get("inner_loops", 0) < ctx.max_inner_loops
    curriculum = on_curriculum(state, ctx)
    if curriculum:
        outer_left = rounds_left(state, ctx)
    else:
        outer_left = state.get("outer_loops", 0) < ctx.max_outer_loops
    if plan is None or ev is None:
        problem = _last_error(state, "planner") or "no plan was produced"
        if outer_left:
            return _verdict("planner", [], f"There is no usable plan ({problem}).", "rules")
        return _verdict("end", [], f"No usable plan ({problem}); budgets spent.", "budget")
    if not curriculum and ev["task_success_rate"] >= ctx.success_threshold:
        return _verdict("end", [], "The task is solved on the held-out seeds.", "rules")
    weak = weak_steps(plan, ev, ctx)
    feedback = failure_summary(ev, weak)
    if curriculum and not weak:
        if outer_left:
            message = f"Every step passed; the curriculum goes on. {feedback}"
            return _verdict("planner", [], message, "curriculum")
        return _verdict(
            "end", [], f"The curriculum's rounds or budget share are spent. {feedback}", "budget"
        )
    left = env_steps_left(state, ctx)
    if curriculum and left is not None and left <= 0:
        # Repairs must not eat into the share of the budget the final policy is owed.
        return _verdict("end", [], f"The curriculum's budget share is spent. {feedback}", "budget")
    if weak and inner_left:
        return _verdict("coder", weak[:1], feedback, "rules")
    if outer_left:
        return _verdict("planner", [], feedback, "rules")
    return _verdict("end", [], f"Budgets spent. {feedback}", "budget")


def weak_steps(plan: Plan, ev: EvaluationRecord, ctx: Context) -> list[str]:
    """The plan's steps, in order, that succeeded in fewer than `success_threshold` of the
    evaluation's episodes."""
    rates = ev["subaction_success"]
    return [s.id for s in plan.sub_actions if rates.get(s.id, 0.0) < ctx.success_threshold]


def guard(
    verdict: Verdict, state: State, ctx: Context, plan: Plan, ev: EvaluationRecord
) -> VerdictRecord:
    """Keep a model's verdict within the budgets, the plan and the order of repairs.

    Code is fixed before the plan is: while a step is weak and the coder has budget left,
    a model's `planner` or early `end` becomes `coder` (a small model otherwise throws
    away a sound plan, or stops, after one weak evaluation). The model's feedback and
    choice of weak steps are kept, with the measured facts beside them; a step it names
    that passed the evaluation is dropped, since its code passes its check already and a
    repair would spend an inner loop on nothing.
    """
    fallback = rules_verdict(state, ctx, plan, ev)
    if ev["task_success_rate"] >= ctx.success_threshold or fallback["source"] == "budget":
        return fallback
    weak = weak_steps(plan, ev, ctx)
    ids = list(dict.fromkeys(i for i in verdict.subaction_ids if i in weak))
    feedback = f"{verdict.feedback}\nWhat the evaluation saw: {fallback['feedback']}".strip()
    if fallback["route"] == "coder":
        return _verdict("coder", ids or fallback["subaction_ids"], feedback, "llm")
    if verdict.route == "end":
        return _verdict("end", [], verdict.feedback, "llm")
    return _verdict(fallback["route"], [], feedback, "llm")


def _last_error(state: State, node: str) -> str | None:
    errors = [e for e in state.get("errors", []) if e["node"] == node]
    return f"{errors[-1]['kind']}: {errors[-1]['message'][:300]}" if errors else None


def failure_summary(ev: EvaluationRecord, weak: list[str]) -> str:
    """A short, concrete account of what failed, for the coder or planner: the rates, and
    for the first weak step one failed episode's reason, inventory and last skill calls."""
    parts = [
        f"task success {ev['task_success_rate']:.0%} over {ev['episodes']} held-out episodes",
        "sub-action success: "
        + ", ".join(f"{k} {v:.0%}" for k, v in ev["subaction_success"].items()),
    ]
    if weak:
        parts.append(f"first weak step: {weak[0]}")
    failures = [f for f in ev["failures"] if not weak or f.get("subaction") == weak[0]]
    failures = failures or list(ev["failures"])
    if failures:
        first = failures[0]
        inventory = ", ".join(f"{k} {v}" for k, v in (first.get("inventory") or {}).items())
        parts.append(
            f"in episode {first.get('seed')}, {first.get('subaction')}: {first.get('reason')}; "
            f"inventory {inventory or 'empty'}"
        )
        err = first.get("error")
        if err:
            parts.append(
                f"error: {err.get('kind')}: {err.get('message')}"
                + (f" (line {err['line']})" if err.get("line") else "")
            )
        trace = first.get("trace") or []
        if trace:
            parts.append("last skill calls: " + "; ".join(trace[-6:]))
    return "; ".join(parts)


def _verdict(route: Any, ids: list[str], feedback: str, source: str) -> VerdictRecord:
    return VerdictRecord(route=route, subaction_ids=ids, feedback=feedback, source=source)


class _CriticBase:
    role: ClassVar[Role] = "critic"

    def decide(
        self, state: State, ctx: Context, plan: Plan, ev: EvaluationRecord
    ) -> tuple[VerdictRecord, dict[str, Any]]:
        raise NotImplementedError

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = context_of(runtime)
        plan = plan_of(state)
        update: dict[str, Any] = {"errors": []}
        ev: EvaluationRecord | None = None
        failed: str | None = None
        if plan is not None:
            try:
                ev = evaluate(state, ctx, plan)
            except Exception as exc:  # an evaluation crash is reported, not fatal
                log.warning("evaluation_failed", error=repr(exc))
                failed = f"{type(exc).__name__}: {exc}"
                update["errors"].append(error_record("critic", "evaluation_failed", failed))
        if failed is not None:
            # The env could not be built or run: neither new code nor a new plan helps.
            verdict = _verdict("end", [], f"The evaluation failed: {failed[:600]}", "rules")
        elif plan is None or ev is None:
            verdict = rules_verdict(state, ctx, None, None)
        else:
            update["evaluations"] = [ev]
            update["env_steps"] = {"evaluation": int(ev.get("env_steps", 0))}
            if ctx.reuse_library:
                publish_policies(state, ctx, plan, ev)
            verdict, extra = self.decide(state, ctx, plan, ev)
            for key, value in extra.items():
                update[key] = update.get(key, []) + value if key == "errors" else value
        log.info(
            "verdict",
            route=verdict["route"],
            source=verdict["source"],
            ids=verdict["subaction_ids"],
        )
        update["verdicts"] = [verdict]
        update["feedback"] = verdict["feedback"]
        if verdict["route"] == "coder":
            update["todo"] = verdict["subaction_ids"]
            update["inner_loops"] = state.get("inner_loops", 0) + 1
        elif verdict["route"] == "planner":
            update["todo"] = []
            if verdict["source"] != "curriculum":  # a passed round is not a repair
                update["outer_loops"] = state.get("outer_loops", 0) + 1
            update["inner_loops"] = 0
        return update


class RulesCritic(_CriticBase):
    """Routes by success thresholds and loop budgets, without a model."""

    name: ClassVar[str] = "rules"

    def decide(
        self, state: State, ctx: Context, plan: Plan, ev: EvaluationRecord
    ) -> tuple[VerdictRecord, dict[str, Any]]:
        return rules_verdict(state, ctx, plan, ev), {}


class LLMCritic(_CriticBase):
    """Asks the critic model for a verdict on the evaluation, kept within budgets by the rules."""

    name: ClassVar[str] = "llm"

    def decide(
        self, state: State, ctx: Context, plan: Plan, ev: EvaluationRecord
    ) -> tuple[VerdictRecord, dict[str, Any]]:
        fallback = rules_verdict(state, ctx, plan, ev)
        if fallback["route"] == "end" or fallback["source"] == "curriculum":
            # Solved, no budget left, or a curriculum round passed: the rules' verdict stands
            # whatever the model says.
            return fallback, {}
        errors = [dict(e) for e in state.get("errors", [])[-5:]]
        messages = critic_messages(state["task"], plan.model_dump(), dict(ev), errors)
        try:
            result = ask_structured(
                "critic",
                ctx.llm_settings("critic"),
                Verdict,
                messages,
                json_schema=verdict_schema([s.id for s in plan.sub_actions]),
            )
        except LLMError as exc:
            if exc.retryable:
                raise  # the endpoint is down: stop the run, keep its state, resume later
            log.warning("critic_llm_failed", kind=exc.kind)
            fallback = rules_verdict(state, ctx, plan, ev)
            fallback["source"] = "rules (model failed)"
            return fallback, {
                "errors": [error_record("critic", f"llm_{exc.kind}", str(exc), raw=exc.raw)],
                "usage": {"critic": exc.usage} if exc.usage else {},
            }
        return guard(result.value, state, ctx, plan, ev), {"usage": {"critic": result.usage}}
