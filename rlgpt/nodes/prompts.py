"""Prompts of every model role, each with its few-shot example, kept short for small models.

The examples come from a made-up kitchen game on purpose: the task knowledge of the real
environment reaches the model only through the environment's manual and skill API.
"""

from __future__ import annotations

import json
import re
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
#: The coder's feedback carries failure traces (skill calls and their results).
CODE_FEEDBACK_CHARS = 1600
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


def skills_summary(skill_specs: Sequence[SkillSpec]) -> str:
    """The skill API in one line (names and parameters): enough for the planner to judge
    what code can do, at a fraction of the full reference's length."""
    calls = [f"{s.name}({', '.join(p.name for p in s.params)})" for s in skill_specs]
    return "api." + ", api.".join(calls)


# --------------------------------------------------------------------------- planner

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


def planner_schema(vocabulary: dict[str, list[str]]) -> dict[str, Any]:
    """The `Plan` JSON schema with predicate names limited to the env's achievements and
    items (every vocabulary word when those lists are missing)."""
    names = [*vocabulary.get("achievements", []), *vocabulary.get("items", [])]
    if not names:
        names = [word for words in vocabulary.values() for word in words]
    return restrict_schema(Plan, {"Predicate.name": names})


def manual_lines(manual: str, words: Sequence[str], limit: int = 6) -> list[str]:
    """The manual's list lines that mention `words` (as whole words), those of the first
    word first: a short excerpt a small model reads more reliably than the whole manual."""
    listed = [line.strip() for line in manual.splitlines() if line.lstrip().startswith("- ")]
    found: list[str] = []
    for word in words:
        if not word:
            continue
        pattern = re.compile(rf"(?<![a-z0-9_]){re.escape(word)}(?![a-z0-9_])")
        found += [line for line in listed if pattern.search(line) and line not in found]
    return found[:limit]


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
    if previous_plan:
        parts.append(f"Previous plan:\n{clip(_compact(previous_plan), CODE_CHARS)}")
    if feedback:
        parts.append(
            f"What is wrong with it:\n{clip(feedback, FEEDBACK_CHARS)}\n"
            "Write a new plan that fixes this: add the missing steps before the steps that "
            "need them."
        )
    return [
        SystemMessage(content=system),
        HumanMessage(content=PLANNER_EXAMPLE_TASK),
        AIMessage(content=_compact(PLANNER_EXAMPLE_ANSWER)),
        HumanMessage(content="\n\n".join(parts)),
    ]


# --------------------------------------------------------------------------- coder

CODER_CODE_SYSTEM = (
    "You write a code action: a Python function `def run(api):` that does one sub-action "
    "with the skill API and returns True when the sub-action is done, False when it cannot "
    "be done. Call only api.<skill>(...) with literal arguments. move_to only reaches "
    "things the agent has seen: when api.seen(x) is False, call api.explore() first. Use "
    "a bounded loop `for _ in range(N):` that checks the goal at its start, so the code "
    "stops as soon as the sub-action is done and keeps trying when a call fails. The "
    "earlier steps of the plan have already run. Keep it short."
)

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
) -> list[BaseMessage]:
    """Messages asking the coder for a code action (`CodeActionAnswer`).

    As for the planner, the manual and skill API lead the prompt so that consecutive
    coder calls share their evaluated prefix. `earlier` are the plan's steps before this
    one (they have run when the code starts).
    """
    system = (
        f"{CODER_CODE_SYSTEM}\n\nGame manual:\n{clip(manual, MANUAL_CHARS)}\n\n"
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
    if feedback:
        parts.append(f"What went wrong:\n{clip(feedback, CODE_FEEDBACK_CHARS)}\nFix the code.")
    request = "\n\n".join(parts)
    shots: list[BaseMessage] = []
    for task, answer in closest_last(CODER_CODE_EXAMPLES, parts[0]):
        shots += [HumanMessage(content=task), AIMessage(content=answer)]
    return [SystemMessage(content=system), *shots, HumanMessage(content=request)]


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
