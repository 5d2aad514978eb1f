"""The critic's prompt, its few-shot example and its verdict schema."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage

from rlgpt.graph.schemas import Verdict
from rlgpt.llm import restrict_schema
from rlgpt.nodes.prompts.common import (
    FEEDBACK_CHARS,
    _compact,
    clip,
    describe_predicate,
    few_shot,
)

CRITIC_SYSTEM = (
    "You judge an evaluation of a plan. route 'end' when the task succeeds often enough "
    "or nothing more can help; 'coder' when some sub-actions fail (list their ids in "
    "subaction_ids) and their code or RL set-up should be fixed; 'planner' when the "
    "steps themselves are wrong or missing. Give short, concrete feedback. Answer with JSON."
)

CRITIC_EXAMPLE_TASK = (
    "(Example from another game.) Task: serve_soup\n"
    "Plan: get_vegetables (code), cook_soup (code), serve_soup (rl)\n"
    "Task success: 0.1\n"
    "Sub-action success: get_vegetables 0.9, cook_soup 0.1, serve_soup 0.1\n"
    "Failures: cook_soup: returned False: no stove visible"
)

CRITIC_EXAMPLE_ANSWER = {
    "route": "coder",
    "subaction_ids": ["cook_soup"],
    "feedback": "cook_soup fails when no stove is visible: explore until one is seen first.",
}


def _plan_line(plan: dict[str, Any]) -> str:
    steps = plan.get("sub_actions", []) if isinstance(plan, dict) else []
    return ", ".join(
        f"{s.get('id', '?')} ({s.get('method', '?')}: {describe_predicate(s.get('predicate', {}))})"
        for s in steps
        if isinstance(s, dict)
    )


def _rate_line(rates: Any) -> str:
    if not isinstance(rates, dict):
        return str(rates)
    return ", ".join(
        f"{name} {value:.2f}" if isinstance(value, int | float) else f"{name} {value}"
        for name, value in rates.items()
    )


def verdict_schema(subaction_ids: list[str]) -> dict[str, Any]:
    """The `Verdict` JSON schema with `subaction_ids` limited to the plan's ids."""
    return restrict_schema(Verdict, {"Verdict.subaction_ids": subaction_ids})


def critic_messages(
    task_name: str,
    plan: dict[str, Any],
    evaluation: dict[str, Any],
    errors: list[dict[str, Any]],
) -> list[BaseMessage]:
    """Messages asking the critic for a `Verdict` on one evaluation."""
    lines = [
        f"Task: {task_name}",
        f"Plan: {_plan_line(plan)}",
        f"Task success: {float(evaluation.get('task_success_rate') or 0.0):.2f} "
        f"over {evaluation.get('episodes', 0)} episodes",
        f"Sub-action success: {_rate_line(evaluation.get('subaction_success', {}))}",
    ]
    if "score" in evaluation:
        lines.append(f"Score: {evaluation['score']}")
    failures = evaluation.get("failures") or []
    if failures:
        lines.append(f"Failures: {clip(_compact(failures[:5]), FEEDBACK_CHARS)}")
    if errors:
        shown = [
            {k: e.get(k) for k in ("node", "kind", "subaction", "message") if e.get(k)}
            for e in errors[-5:]
        ]
        lines.append(f"Errors: {clip(_compact(shown), FEEDBACK_CHARS)}")
    example = (CRITIC_EXAMPLE_TASK, _compact(CRITIC_EXAMPLE_ANSWER))
    return few_shot(CRITIC_SYSTEM, [example], "\n".join(lines))
