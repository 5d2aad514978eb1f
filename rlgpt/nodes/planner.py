"""The slow agent: decomposes the task into sub-actions, each marked `code` or `rl`."""

from __future__ import annotations

from typing import Any, ClassVar

from langgraph.runtime import Runtime

from rlgpt.envs.base import EnvAdapter
from rlgpt.graph.context import Context
from rlgpt.graph.schemas import Plan
from rlgpt.graph.state import State
from rlgpt.llm import LLMError, LLMSettings, ask_structured
from rlgpt.llm.prompts import planner_messages, planner_schema, skills_doc
from rlgpt.logging import get_logger
from rlgpt.nodes.base import Role
from rlgpt.nodes.common import context_of, env_adapter, error_record

log = get_logger("planner")


class PlanInvalidError(ValueError):
    """A plan that parses but names things the environment does not have."""


def check_plan(plan: Plan, adapter: EnvAdapter) -> Plan:
    """The plan with each predicate's kind matched to its name; PlanInvalidError on unknown names.

    A predicate that names an item as an achievement (or the reverse) is unambiguous, so
    its kind is corrected rather than the whole plan refused.
    """
    vocab = adapter.vocabulary()
    kinds = {"achievement": set(vocab["achievements"]), "inventory": set(vocab["items"])}
    problems = []
    for step in plan.sub_actions:
        pred = step.predicate
        if pred.name in kinds[pred.kind]:
            continue
        other = "inventory" if pred.kind == "achievement" else "achievement"
        if pred.name in kinds[other]:
            step.predicate = pred.model_copy(update={"kind": other})
        else:
            problems.append(f"{step.id}: unknown {pred.kind} {pred.name!r}")
    if problems:
        raise PlanInvalidError("; ".join(problems))
    return plan


class LLMPlanner:
    """Asks the planner model for a schema-constrained `Plan` and checks it against the env."""

    role: ClassVar[Role] = "planner"
    name: ClassVar[str] = "llm"

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = context_of(runtime)
        adapter = env_adapter(ctx.env)
        task = adapter.task(state["task"])
        returning = bool(state.get("plan_history"))
        messages = planner_messages(
            task.name,
            task.description,
            adapter.manual(),
            skills_doc(adapter.skill_specs()),
            state.get("feedback") if returning else None,
            state.get("plan") if returning else None,
        )
        try:
            result = ask_structured(
                "planner",
                LLMSettings.for_role(ctx, "planner"),
                Plan,
                messages,
                json_schema=planner_schema(adapter.vocabulary()),
            )
        except LLMError as exc:
            log.warning("plan_failed", kind=exc.kind, error=str(exc))
            return {
                "errors": [error_record("planner", f"llm_{exc.kind}", str(exc), raw=exc.raw)],
                "todo": [],
                "usage": {"planner": exc.usage} if exc.usage else {},
            }
        update: dict[str, Any] = {"usage": {"planner": result.usage}}
        try:
            plan = check_plan(result.value, adapter)
        except PlanInvalidError as exc:
            log.warning("plan_invalid", error=str(exc))
            update.update(
                errors=[error_record("planner", "invalid_plan", str(exc), raw=result.raw)],
                todo=[],
            )
            return update
        dumped = plan.model_dump()
        log.info("planned", steps=[(s.id, s.method) for s in plan.sub_actions])
        update.update(
            plan=dumped,
            plan_history=[dumped],
            todo=[s.id for s in plan.sub_actions],
            feedback="",
        )
        return update
