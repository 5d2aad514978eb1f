"""Prompts of every model role, each with its few-shot example, kept short for small models.

The examples come from a made-up kitchen game on purpose: the task knowledge of the real
environment reaches the model only through the environment's manual and skill API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from rlgpt.envs.base import Predicate, SkillSpec
from rlgpt.graph.schemas import Plan, RLSetup, Verdict
from rlgpt.llm.client import restrict_schema

#: Character budgets per prompt part (~4 characters a token): the local model's window is
#: 4096 tokens and the answer needs room too.
MANUAL_CHARS = 4000
SKILLS_CHARS = 3200
FEEDBACK_CHARS = 800
CODE_CHARS = 1200


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, marking the cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 5].rstrip() + " ..."


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(", ", ": "), ensure_ascii=False)


def describe_predicate(predicate: Any) -> str:
    """A predicate dict (or Predicate) in words; falls back to its JSON."""
    try:
        return Predicate.model_validate(predicate).describe()
    except ValidationError:
        return _compact(predicate)


# --------------------------------------------------------------------------- skills


def skills_doc(skill_specs: Sequence[SkillSpec], inline_choices: int = 6) -> str:
    """The skill API as a compact reference, one line per skill.

    Short choice lists are written inline (`item: "stone"|"table"`); a long one is written
    once at the end under a name (`name: <name>` ... `<name> = "water"|"grass"|...`), so
    the reference stays short without hiding any allowed value.
    """
    aliases: dict[tuple[str, ...], str] = {}
    lines = []
    for spec in skill_specs:
        params = []
        for param in spec.params:
            if param.choices and len(param.choices) <= inline_choices:
                text = f"{param.name}: " + "|".join(f'"{c}"' for c in param.choices)
            elif param.choices:
                if param.choices not in aliases:
                    alias, n = param.name, 2
                    while alias in aliases.values():
                        alias, n = f"{param.name}{n}", n + 1
                    aliases[param.choices] = alias
                text = f"{param.name}: <{aliases[param.choices]}>"
            else:
                text = f"{param.name}: {param.type}"
            if param.default is not None:
                text += f" = {param.default!r}"
            params.append(text)
        acts = " [acts]" if spec.steps_env else ""
        doc = spec.doc.strip().splitlines()[0] if spec.doc.strip() else ""
        lines.append(f"api.{spec.name}({', '.join(params)}) -> {spec.returns}  # {doc}{acts}")
    lines.append("[acts] = takes game steps.")
    for choices, alias in aliases.items():
        lines.append(f"<{alias}> = " + "|".join(f'"{c}"' for c in choices))
    return "\n".join(lines)


# --------------------------------------------------------------------------- planner

PLANNER_SYSTEM = (
    "You plan for an agent in a game. Split the task into 1 to 8 ordered sub-actions. "
    "For each give: id (lowercase_with_underscores), description, predicate (the check "
    "that it is done: kind 'achievement' with an achievement name, or kind 'inventory' "
    "with an item name and at_least), method and reason. method is 'code' when a short "
    "program over the skill API can do it (find, walk to, interact, craft when the "
    "materials are there), 'rl' when it must be learned (searching unknown places, "
    "fighting, long reactive control). Use only names from the manual. Answer with JSON."
)

PLANNER_EXAMPLE_TASK = (
    "(Example from another game.) Task: serve_soup: serve a bowl of soup.\n"
    "Manual: pick up vegetables in the garden; cook soup at a stove with 2 vegetables; "
    "serving soup unlocks the achievement serve_soup. Customers wander around."
)

PLANNER_EXAMPLE_ANSWER = {
    "sub_actions": [
        {
            "id": "get_vegetables",
            "description": "Pick up 2 vegetables in the garden.",
            "predicate": {"kind": "inventory", "name": "vegetable", "at_least": 2},
            "method": "code",
            "reason": "Walk to visible vegetables and pick them up.",
        },
        {
            "id": "cook_soup",
            "description": "Cook soup at a stove.",
            "predicate": {"kind": "inventory", "name": "soup", "at_least": 1},
            "method": "code",
            "reason": "A fixed sequence once the vegetables are held.",
        },
        {
            "id": "serve_soup",
            "description": "Find a wandering customer and serve the soup.",
            "predicate": {"kind": "achievement", "name": "serve_soup", "at_least": 1},
            "method": "rl",
            "reason": "Customers move; reaching them needs learned control.",
        },
    ],
    "rationale": "Gather, cook, then the moving part is learned.",
}


def planner_schema(vocabulary: dict[str, list[str]]) -> dict[str, Any]:
    """The `Plan` JSON schema with predicate names limited to the env's achievements and
    items (every vocabulary word when those lists are missing)."""
    names = [*vocabulary.get("achievements", []), *vocabulary.get("items", [])]
    if not names:
        names = [word for words in vocabulary.values() for word in words]
    return restrict_schema(Plan, {"Predicate.name": names})


def planner_messages(
    task_name: str,
    task_description: str,
    manual: str,
    skills_doc: str,
    feedback: str | None,
    previous_plan: dict[str, Any] | None,
) -> list[BaseMessage]:
    """Messages asking the planner for a `Plan` (or a revised one after feedback).

    The manual and skill API sit in the system message, ahead of everything that changes
    between calls, so a local server can reuse the evaluated prompt prefix.
    """
    system = (
        f"{PLANNER_SYSTEM}\n\nGame manual:\n{clip(manual, MANUAL_CHARS)}\n\n"
        f"Skill API for code:\n{clip(skills_doc, SKILLS_CHARS)}"
    )
    parts = [f"Task: {task_name}: {task_description}"]
    if previous_plan:
        parts.append(f"Previous plan:\n{clip(_compact(previous_plan), CODE_CHARS)}")
    if feedback:
        parts.append(f"Feedback on it:\n{clip(feedback, FEEDBACK_CHARS)}\nRevise the plan.")
    return [
        SystemMessage(content=system),
        HumanMessage(content=PLANNER_EXAMPLE_TASK),
        AIMessage(content=_compact(PLANNER_EXAMPLE_ANSWER)),
        HumanMessage(content="\n\n".join(parts)),
    ]


# --------------------------------------------------------------------------- coder

CODER_CODE_SYSTEM = (
    "You write a code action: a Python function `def run(api):` that does one sub-action "
    "using only the skill API, with literal arguments, and returns True when the sub-action "
    "is done, False when it cannot be done. Every loop must call a skill that acts, so it "
    "makes progress. Keep it short."
)

CODER_CODE_EXAMPLE_TASK = (
    "(Example from another game.) Sub-action: get_vegetables: pick up 2 vegetables.\n"
    "Done when: inventory vegetable >= 2\n"
    "Skill API:\n"
    'api.walk_to(target: "garden"|"stove") -> bool  # Walk next to the nearest visible '
    "target. [acts]\n"
    "api.pick() -> bool  # Pick up what is in front. [acts]\n"
    'api.has(item: "vegetable"|"soup") -> int  # How many are held.'
)

CODER_CODE_EXAMPLE_ANSWER = (
    "def run(api):\n"
    '    while api.has("vegetable") < 2:\n'
    '        if not api.walk_to("garden"):\n'
    "            return False\n"
    "        api.pick()\n"
    "    return True\n"
)


def coder_code_messages(
    sub_action: dict[str, Any],
    manual: str,
    skills_doc: str,
    feedback: str | None,
    previous_code: str | None,
) -> list[BaseMessage]:
    """Messages asking the coder for a code action (`CodeActionAnswer`).

    As for the planner, the manual and skill API lead the prompt so that consecutive
    coder calls share their evaluated prefix.
    """
    system = (
        f"{CODER_CODE_SYSTEM}\n\nGame manual:\n{clip(manual, MANUAL_CHARS)}\n\n"
        f"Skill API:\n{clip(skills_doc, SKILLS_CHARS)}"
    )
    parts = [
        f"Sub-action: {sub_action.get('id', '')}: {sub_action.get('description', '')}",
        f"Done when: {describe_predicate(sub_action.get('predicate', {}))}",
    ]
    if previous_code:
        parts.append(f"Previous code:\n{clip(previous_code, CODE_CHARS)}")
    if feedback:
        parts.append(f"What went wrong:\n{clip(feedback, FEEDBACK_CHARS)}\nFix the code.")
    return [
        SystemMessage(content=system),
        HumanMessage(content=CODER_CODE_EXAMPLE_TASK),
        AIMessage(content=CODER_CODE_EXAMPLE_ANSWER),
        HumanMessage(content="\n\n".join(parts)),
    ]


CODER_RL_SYSTEM = (
    "You set up reinforcement learning for one sub-action. The agent learns over the "
    "game's primitive actions plus the code actions you pick from the library (use only "
    "names listed there; pick the ones that help). Optionally reward items whose count "
    "should rise on the way (shaping, weight 0.01 to 0.5). Choose the episode length "
    "(steps) and whether episodes start after the plan's earlier steps. Answer with JSON."
)

CODER_RL_EXAMPLE_TASK = (
    "(Example from another game.) Sub-action: serve_soup: find a wandering customer and "
    "serve the soup.\n"
    "Done when: achievement serve_soup unlocked\n"
    "Library: get_vegetables, cook_soup, walk_to_counter"
)

CODER_RL_EXAMPLE_ANSWER = {
    "code_actions": ["walk_to_counter"],
    "shaping": [],
    "episode_length": 300,
    "start_after_previous": True,
}


def rl_setup_schema(library: list[str], items: list[str]) -> dict[str, Any]:
    """The `RLSetup` JSON schema with code actions limited to the library and shaping items
    to the env's items (an empty list leaves that field free)."""
    return restrict_schema(RLSetup, {"RLSetup.code_actions": library, "ShapingTerm.item": items})


def coder_rl_messages(
    sub_action: dict[str, Any], library: list[str], feedback: str | None
) -> list[BaseMessage]:
    """Messages asking the coder for an `RLSetup`."""
    parts = [
        f"Sub-action: {sub_action.get('id', '')}: {sub_action.get('description', '')}",
        f"Done when: {describe_predicate(sub_action.get('predicate', {}))}",
        f"Library: {', '.join(library) if library else '(empty)'}",
    ]
    if feedback:
        parts.append(f"What went wrong last time:\n{clip(feedback, FEEDBACK_CHARS)}")
    return [
        SystemMessage(content=CODER_RL_SYSTEM),
        HumanMessage(content=CODER_RL_EXAMPLE_TASK),
        AIMessage(content=_compact(CODER_RL_EXAMPLE_ANSWER)),
        HumanMessage(content="\n".join(parts)),
    ]


# --------------------------------------------------------------------------- critic

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
    return [
        SystemMessage(content=CRITIC_SYSTEM),
        HumanMessage(content=CRITIC_EXAMPLE_TASK),
        AIMessage(content=_compact(CRITIC_EXAMPLE_ANSWER)),
        HumanMessage(content="\n".join(lines)),
    ]


__all__ = [
    "coder_code_messages",
    "coder_rl_messages",
    "critic_messages",
    "planner_messages",
    "planner_schema",
    "rl_setup_schema",
    "skills_doc",
    "verdict_schema",
]
