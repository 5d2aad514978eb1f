"""Pydantic models for every structured LLM answer: plan, code action, RL set-up, verdict."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from rlgpt.envs.base import EnvAdapter, Predicate, ShapingTerm
from rlgpt.llm import CodeActionAnswer

__all__ = [
    "MAX_PLAN_STEPS",
    "MAX_STEPS",
    "CodeActionAnswer",
    "Plan",
    "PlanInvalidError",
    "RLSetup",
    "ShapingTerm",
    "SubAction",
    "Verdict",
    "check_plan",
    "slugify",
]

MAX_STEPS = 8  # a plan longer than this is more than a small model can carry through
#: A curriculum's plan, which grows by a few steps per round (one answer adds at most MAX_STEPS).
MAX_PLAN_STEPS = 32

_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def slugify(text: str) -> str:
    """A valid identifier for a sub-action or action name (lowercase, underscores)."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not slug or not slug[0].isalpha():
        slug = f"a_{slug}"
    return slug[:40]


class SubAction(BaseModel):
    """One step of a plan: what to achieve, how to check it, and whether to code or learn it."""

    id: str = Field(description="Short identifier, lowercase with underscores, e.g. 'get_wood'.")
    description: str = Field(description="What the agent must do in this step.")
    predicate: Predicate = Field(description="The condition that marks this step as done.")
    method: Literal["code", "rl"] = Field(
        description="'code' if a short program over the skill API can do it; 'rl' to learn it."
    )
    reason: str = Field(default="", description="Why this method was chosen.")

    @field_validator("id")
    @classmethod
    def _normalise_id(cls, value: str) -> str:
        return value if _SLUG.match(value) else slugify(value)


class Plan(BaseModel):
    """The slow agent's decomposition of a task into ordered sub-actions."""

    # The rationale comes first: a model that states what the task needs before listing the
    # steps orders them better (the answer is generated in field order).
    rationale: str = Field(
        default="",
        max_length=400,
        description="What the task needs, and what those needs need, in a sentence or two.",
    )
    sub_actions: list[SubAction] = Field(
        min_length=1, max_length=MAX_PLAN_STEPS, description="Ordered steps."
    )

    @field_validator("sub_actions")
    @classmethod
    def _unique_ids(cls, steps: list[SubAction]) -> list[SubAction]:
        seen: set[str] = set()
        for step in steps:
            base, n = step.id, 2
            while step.id in seen:
                step.id = f"{base}_{n}"
                n += 1
            seen.add(step.id)
        return steps


class RLSetup(BaseModel):
    """The fast agent's RL set-up for an `rl` sub-action."""

    code_actions: list[str] = Field(
        default_factory=list,
        description="Names of library actions that join the primitive actions in the action space.",
    )
    shaping: list[ShapingTerm] = Field(default_factory=list, description="Optional reward shaping.")
    episode_length: int = Field(default=500, ge=10, le=10000, description="Env steps per episode.")
    start_after_previous: bool = Field(
        default=True,
        description="Start each episode after running the plan's earlier steps (else from reset).",
    )


class Verdict(BaseModel):
    """The critic's routing decision after an evaluation."""

    route: Literal["coder", "planner", "end"] = Field(
        description="'coder' to fix code actions or RL set-ups, 'planner' to re-plan, 'end'."
    )
    subaction_ids: list[str] = Field(
        default_factory=list, description="Sub-actions the coder should rework (route=coder)."
    )
    feedback: str = Field(default="", description="What went wrong and what to change.")


class PlanInvalidError(ValueError):
    """A plan that parses but names things the environment does not have."""


def _copied_check(achievement: str, pred: Predicate, kinds: dict[str, set[str]]) -> bool:
    """True when the check of a step named `achievement` is about something else: another
    achievement, or an item other than the one in its name (collect_wood may check wood)."""
    if pred.name in kinds["achievement"]:
        return pred.name != achievement
    _, _, thing = achievement.partition("_")
    return pred.name in kinds["inventory"] and pred.name != thing


def check_plan(plan: Plan, adapter: EnvAdapter) -> Plan:
    """The plan with each predicate's kind matched to its name; PlanInvalidError on unknown names.

    A predicate that names an item as an achievement (or the reverse) is unambiguous, so
    its kind is corrected rather than the whole plan refused. So is a step named exactly
    after an achievement whose check names another achievement, or an item other than the
    one the achievement is about (`eat_cow` checking `inventory sapling`): a small model
    copies a neighbouring step's check more often than it misnames a step.
    """
    vocab = adapter.vocabulary()
    kinds = {
        "achievement": set(vocab.get("achievements", [])),
        "inventory": set(vocab.get("items", [])),
    }
    problems = []
    for step in plan.sub_actions:
        pred = step.predicate
        if step.id in kinds["achievement"] and _copied_check(step.id, pred, kinds):
            step.predicate = Predicate(kind="achievement", name=step.id)
            continue
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
