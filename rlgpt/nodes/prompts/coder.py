"""The coder's prompts (fast agent): code actions and RL set-ups, with few-shot examples."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from rlgpt.graph.schemas import RLSetup
from rlgpt.llm import restrict_schema
from rlgpt.nodes.prompts.common import (
    CODE_CHARS,
    CODE_FEEDBACK_CHARS,
    FEEDBACK_CHARS,
    MANUAL_CHARS,
    SKILLS_CHARS,
    _compact,
    clip,
    describe_predicate,
    few_shot,
    manual_lines,
)

NAVIGATION_SKILLS = ("move_to", "seen", "explore")
NAVIGATION_HINT = (
    "move_to only reaches things the agent has seen: when api.seen(x) is False, call "
    "api.explore() first. "
)
CODER_CODE_SYSTEM = (
    "You write a code action: a Python function `def run(api):` that does one sub-action "
    "with the skill API and returns True when the sub-action is done, False when it cannot "
    "be done. Call only api.<skill>(...) with literal arguments. "
    + NAVIGATION_HINT
    + "Use a bounded loop `for _ in range(N):` that checks the goal at its start, so the "
    "code stops as soon as the sub-action is done and keeps trying when a call fails. The "
    "earlier steps of the plan have already run. Keep it short."
)


def has_skills(skills_doc: str, names: Sequence[str]) -> bool:
    """Whether the skill reference (`skills_doc`'s output) documents every skill in `names`."""
    return all(f"api.{name}(" in skills_doc for name in names)


CODER_CODE_EXAMPLE_TASK = (
    "(Example from another game.) Sub-action: collect_reeds: collect 3 reed.\n"
    "Done when: inventory reed >= 3\n"
    "Skill API (part):\n"
    'api.count(item: "reed"|"clay") -> int  # How many the inventory holds.\n'
    'api.seen(name: "reeds"|"clay"|"bench") -> bool  # Whether it was seen.\n'
    'api.move_to(name: "reeds"|"clay"|"bench") -> bool  # Walk next to the nearest seen '
    "one and face it. [acts]\n"
    "api.explore(steps: int = 20) -> bool  # Walk toward unseen parts of the map. [acts]\n"
    "api.do() -> bool  # Interact with the facing cell. [acts]"
)

CODER_CODE_EXAMPLE_ANSWER = (
    "def run(api):\n"
    "    for _ in range(20):\n"
    '        if api.count("reed") >= 3:\n'
    "            return True\n"
    '        if api.seen("reeds"):\n'
    '            api.move_to("reeds")\n'
    "            api.do()\n"
    "        else:\n"
    "            api.explore(20)\n"
    "    return False\n"
)

CODER_CODE_EXAMPLE_TASK_2 = (
    "(Example from another game.) Sub-action: place_bench: place a bench.\n"
    "Done when: achievement place_bench unlocked\n"
    "Earlier steps done: collect_reeds (inventory reed >= 3)"
)

CODER_CODE_EXAMPLE_ANSWER_2 = (
    "def run(api):\n"
    "    for _ in range(3):\n"
    '        if api.place("bench"):\n'
    "            return True\n"
    "        api.explore(5)\n"
    "    return False\n"
)

CODER_CODE_EXAMPLE_TASK_3 = (
    "(Example from another game.) Sub-action: make_spade: make a spade next to the bench.\n"
    "Done when: achievement make_spade unlocked\n"
    "Earlier steps done: collect_reeds (inventory reed >= 3), place_bench (achievement "
    "place_bench unlocked)"
)

CODER_CODE_EXAMPLE_ANSWER_3 = (
    "def run(api):\n"
    "    for _ in range(5):\n"
    '        if api.has("spade"):\n'
    "            return True\n"
    '        if api.seen("bench"):\n'
    '            api.move_to("bench")\n'
    '            api.make("spade")\n'
    "        else:\n"
    "            api.explore(10)\n"
    "    return False\n"
)


#: Stored actions for similar sub-actions shown to the coder, and the characters of each:
#: small models lose the request in long prompts.
SIMILAR_EXAMPLES = 1
SIMILAR_CHARS = 700

CODER_CODE_EXAMPLES: tuple[tuple[str, str], ...] = (
    (CODER_CODE_EXAMPLE_TASK, CODER_CODE_EXAMPLE_ANSWER),
    (CODER_CODE_EXAMPLE_TASK_2, CODER_CODE_EXAMPLE_ANSWER_2),
    (CODER_CODE_EXAMPLE_TASK_3, CODER_CODE_EXAMPLE_ANSWER_3),
)


def coder_code_messages(
    sub_action: dict[str, Any],
    manual: str,
    skills_doc: str,
    feedback: str | None,
    previous_code: str | None,
    earlier: Sequence[dict[str, Any]] = (),
    similar: Sequence[tuple[str, str]] = (),
) -> list[BaseMessage]:
    """Messages asking the coder for a code action (`CodeActionAnswer`).

    As for the planner, the manual and skill API lead the prompt so that consecutive
    coder calls share their evaluated prefix. `earlier` are the plan's steps before this
    one (they have run when the code starts). `similar` are (what it is, code) of stored
    actions for similar sub-actions that failed this step's check; the first
    `SIMILAR_EXAMPLES` are shown, clipped, and only on a first attempt.
    """
    instructions = CODER_CODE_SYSTEM
    if not has_skills(skills_doc, NAVIGATION_SKILLS):
        instructions = instructions.replace(NAVIGATION_HINT, "")
    system = (
        f"{instructions}\n\nGame manual:\n{clip(manual, MANUAL_CHARS)}\n\n"
        f"Skill API:\n{clip(skills_doc, SKILLS_CHARS)}"
    )
    parts = [
        f"Sub-action: {sub_action.get('id', '')}: {sub_action.get('description', '')}",
        f"Done when: {describe_predicate(sub_action.get('predicate', {}))}",
    ]
    predicate = sub_action.get("predicate", {})
    lines = manual_lines(manual, [str(sub_action.get("id", "")), str(predicate.get("name", ""))], 4)
    if lines:
        parts.append("Manual lines about it:\n" + "\n".join(lines))
    if earlier:
        done = ", ".join(
            f"{s.get('id', '?')} ({describe_predicate(s.get('predicate', {}))})" for s in earlier
        )
        parts.append(f"Earlier steps done: {done}")
    if previous_code:
        parts.append(f"Previous code:\n{clip(previous_code, CODE_CHARS)}")
    else:
        for label, source in list(similar)[:SIMILAR_EXAMPLES]:
            parts.append(
                f"Stored code for a similar sub-action ({label}); it did not pass this "
                f"sub-action's check, adapt it:\n{clip(source, SIMILAR_CHARS)}"
            )
    if feedback:
        parts.append(f"What went wrong:\n{clip(feedback, CODE_FEEDBACK_CHARS)}\nFix the code.")
    examples = closest_last(CODER_CODE_EXAMPLES, parts[0])
    return few_shot(system, examples, "\n\n".join(parts))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def closest_last(examples: Sequence[tuple[str, str]], request: str) -> list[tuple[str, str]]:
    """The few-shot examples ordered by how many words their task shares with the request,
    the closest last: a small model follows the example next to the question most."""
    words = _words(request)
    first_lines = [task.splitlines()[0] for task, _ in examples]
    ranked = sorted(range(len(examples)), key=lambda i: (len(_words(first_lines[i]) & words), -i))
    return [examples[i] for i in ranked]


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
    example = (CODER_RL_EXAMPLE_TASK, _compact(CODER_RL_EXAMPLE_ANSWER))
    return few_shot(CODER_RL_SYSTEM, [example], "\n".join(parts))


# --------------------------------------------------------------------------- critic
