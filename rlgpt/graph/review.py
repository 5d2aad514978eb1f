"""Human in the loop: approve, edit or reject a plan; approve the RL budgets before training."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from pydantic import BaseModel, Field, ValidationError

from rlgpt.envs.base import load_adapter
from rlgpt.graph.context import Context, context_of
from rlgpt.graph.schemas import Plan, check_plan
from rlgpt.graph.state import State
from rlgpt.logging import get_logger

log = get_logger("review")


class PlanReview(BaseModel):
    """A reviewer's answer to a plan, given as `Command(resume=...)`."""

    action: Literal["approve", "edit", "reject"] = Field(
        description="approve as is, replace it with `plan`, or send it back with `feedback`."
    )
    plan: Plan | None = Field(default=None, description="The edited plan (action=edit).")
    feedback: str = Field(default="", description="What the planner should change (reject).")


class RLReview(BaseModel):
    """A reviewer's answer to the RL jobs about to run."""

    action: Literal["approve", "skip"] = Field(description="Train the jobs, or skip them.")
    timesteps: int | None = Field(
        default=None, ge=1, description="A different env-step budget per job (approve only)."
    )


def ask(payload: dict[str, Any], schema: type[BaseModel]) -> Any:
    """Interrupt until the answer parses; an invalid answer is shown back with its error."""
    while True:
        answer = interrupt(payload)
        try:
            return schema.model_validate(answer)
        except ValidationError as exc:
            log.warning("review_answer_invalid", kind=payload["kind"], error=str(exc))
            payload = {**payload, "error": f"invalid answer: {exc.errors()[0]['msg']}"}


def review_plan(state: State, runtime: Runtime[Context]) -> Command[Literal["coder", "planner"]]:
    """Pause after planning when `approve_plan` is set; route on the reviewer's answer."""
    ctx = context_of(runtime)
    if not ctx.approve_plan or not state.get("plan"):
        return Command(goto="coder")
    payload = {
        "kind": "approve_plan",
        "plan": state["plan"],
        "answer": 'e.g. {"action": "approve"} | {"action": "edit", "plan": {...}} | '
        '{"action": "reject", "feedback": "..."}',
    }
    review: PlanReview = ask(payload, PlanReview)
    while review.action == "edit" and review.plan is None:
        review = ask({**payload, "error": "action=edit needs a plan"}, PlanReview)
    log.info("plan_reviewed", action=review.action)
    if review.action == "approve":
        return Command(goto="coder")
    if review.action == "reject":
        return Command(
            goto="planner",
            update={"feedback": f"A reviewer rejected the plan: {review.feedback}", "todo": []},
        )
    plan = check_plan(review.plan, load_adapter(ctx.env))  # type: ignore[arg-type]
    dumped = plan.model_dump()
    return Command(
        goto="coder",
        update={
            "plan": dumped,
            "plan_history": [dumped],
            "todo": [s.id for s in plan.sub_actions],
        },
    )


def review_rl_jobs(jobs: list[dict[str, Any]], ctx: Context) -> RLReview:
    """Ask once for every job of a trainer step (one interrupt, so resuming never retrains)."""
    if not ctx.approve_rl or not jobs:
        return RLReview(action="approve")
    review: RLReview = ask({"kind": "approve_rl", "jobs": jobs}, RLReview)
    log.info("rl_reviewed", action=review.action, timesteps=review.timesteps)
    return review
