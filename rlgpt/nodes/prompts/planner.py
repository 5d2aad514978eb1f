"""The planner's prompt (slow agent), its few-shot example and its answer schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from rlgpt.graph.schemas import MAX_STEPS, Plan
from rlgpt.llm import restrict_schema
from rlgpt.nodes.prompts.common import (
    CODE_CHARS,
    FEEDBACK_CHARS,
    MANUAL_CHARS,
    SKILLS_CHARS,
    _compact,
    clip,
    few_shot,
    manual_lines,
)

PLANNER_SYSTEM = (
    "You plan for an agent in a game. Split the task into 1 to 8 ordered sub-actions.\n"
    "Work backwards with the manual: find what unlocks the task and what it uses and needs; "
    "then what each of those needs; until only things the agent can get from the start "
    "remain. Add up what several steps use of one item (a step that uses 2 wood and a "
    "later one that uses 1 wood need 3 wood collected first). Then order the steps so "
    "that every step's needs are met by earlier steps.\n"
    "Write the rationale first: the chain of needs in one or two sentences. For each "
    "sub-action give: id (lowercase_with_underscores), description, predicate (the check "
    "that it is done: kind 'achievement' with an achievement name, or kind 'inventory' "
    "with an item name and at_least), method and reason. method is 'code' when a short "
    "program over the skill API can do it (find, walk to, interact, place, make), 'rl' "
    "only when it must be learned (fighting, reacting to moving creatures, surviving). "
    "Use only names from the manual. Answer with JSON."
)

PLANNER_EXAMPLE_TASK = (
    "(Example from another game.) Task: place_stove: unlock the achievement place_stove.\n"
    "Manual (part):\n"
    "- collect_reed: face reeds and do\n"
    "- collect_clay: face clay and do (needs 1 spade)\n"
    "- place_bench: place bench (uses 2 reed; on grass)\n"
    "- make_spade: make spade (uses 1 reed; nearby bench)\n"
    "- place_stove: place stove (uses 2 clay; on grass)"
)

PLANNER_EXAMPLE_ANSWER = {
    "rationale": "place_stove uses 2 clay; clay needs a spade; make_spade uses 1 reed near a "
    "bench; place_bench uses 2 reed. So: 3 reed, bench, spade, 2 clay, stove.",
    "sub_actions": [
        {
            "id": "collect_reeds",
            "description": "Collect 3 reed: 2 for the bench, 1 for the spade.",
            "predicate": {"kind": "inventory", "name": "reed", "at_least": 3},
            "method": "code",
            "reason": "Find reeds, walk to them and collect.",
        },
        {
            "id": "place_bench",
            "description": "Place a bench.",
            "predicate": {"kind": "achievement", "name": "place_bench", "at_least": 1},
            "method": "code",
            "reason": "One placement once the reed is held.",
        },
        {
            "id": "make_spade",
            "description": "Make a spade next to the bench.",
            "predicate": {"kind": "achievement", "name": "make_spade", "at_least": 1},
            "method": "code",
            "reason": "Walk to the bench and make it.",
        },
        {
            "id": "collect_clay",
            "description": "Collect 2 clay with the spade.",
            "predicate": {"kind": "inventory", "name": "clay", "at_least": 2},
            "method": "code",
            "reason": "Find clay, walk to it and collect.",
        },
        {
            "id": "place_stove",
            "description": "Place the stove.",
            "predicate": {"kind": "achievement", "name": "place_stove", "at_least": 1},
            "method": "code",
            "reason": "One placement once the clay is held.",
        },
    ],
}


def planner_schema(vocabulary: dict[str, list[str]], allow_rl: bool = True) -> dict[str, Any]:
    """The `Plan` JSON schema with predicate names limited to the env's achievements and
    items (every vocabulary word when those lists are missing), at most `MAX_STEPS` steps,
    and only `code` steps unless `allow_rl`."""
    names = [*vocabulary.get("achievements", []), *vocabulary.get("items", [])]
    if not names:
        names = [word for words in vocabulary.values() for word in words]
    choices: dict[str, Sequence[str]] = {"Predicate.name": names}
    if not allow_rl:
        choices["SubAction.method"] = ["code"]
    schema = restrict_schema(Plan, choices)
    # A curriculum's plan grows past this over its rounds; one answer adds at most this.
    schema["properties"]["sub_actions"]["maxItems"] = MAX_STEPS
    return schema


CURRICULUM_ROUND = (
    "This task has no single goal: it is worked through in rounds (an automatic "
    "curriculum). This is round {round}.\n{progress}\n"
    "Choose the next {k} achievement(s) that are closest to what the agent can already do, "
    "and plan only the new steps toward them (with whatever they need that the kept steps "
    "do not give); they run after the kept steps. Do not plan the whole game: later rounds "
    "add more."
)


def planner_messages(
    task_name: str,
    task_description: str,
    manual: str,
    skills_doc: str,
    feedback: str | None,
    previous_plan: dict[str, Any] | None,
    progress: str | None = None,
    code_only: bool = False,
) -> list[BaseMessage]:
    """Messages asking the planner for a `Plan` (or a revised one after feedback).

    `progress` makes it a curriculum round (see `rlgpt.nodes.curriculum`): what the agent
    can do, and the request for the steps toward the next achievements. `code_only` asks
    for code steps alone.

    The manual and skill API sit in the system message, ahead of everything that changes
    between calls, so a local server can reuse the evaluated prompt prefix. The manual's
    lines about the task are repeated next to it.
    """
    system = (
        f"{PLANNER_SYSTEM}\n\nGame manual:\n{clip(manual, MANUAL_CHARS)}\n\n"
        f"Skill API for code:\n{clip(skills_doc, SKILLS_CHARS)}"
    )
    short_name = task_name.rpartition(":")[2]
    parts = [f"Task: {short_name}: {task_description}"]
    lines = manual_lines(manual, [short_name])
    if lines:
        parts.append("Manual lines about it:\n" + "\n".join(lines))
    if progress:
        parts.append(progress)
    if code_only:
        parts.append("Every step must be method 'code': this agent learns nothing by RL.")
    if previous_plan:
        parts.append(f"Previous plan:\n{clip(_compact(previous_plan), CODE_CHARS)}")
    if feedback:
        parts.append(
            f"What is wrong with it:\n{clip(feedback, FEEDBACK_CHARS)}\n"
            "Write a new plan that fixes this: add the missing steps before the steps that "
            "need them."
        )
    example = (PLANNER_EXAMPLE_TASK, _compact(PLANNER_EXAMPLE_ANSWER))
    return few_shot(system, [example], "\n\n".join(parts))


# --------------------------------------------------------------------------- coder

#: Said only to a coder whose skill API has these skills.
