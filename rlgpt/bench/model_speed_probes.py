"""The model-speed suite's requests: each role's real prompts, and the order of the calls."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROLES: tuple[str, ...] = ("planner", "coder", "critic")
#: Prompt variants per role: a call differs from the role's previous one in its last user
#: message only, as between the calls of a real run.
VARIANTS = 4


@dataclass
class Probe:
    """One request of a role: its messages and the constraint a real node sends with them."""

    role: str
    variant: int
    label: str
    messages: list[dict[str, str]]
    extra_body: dict[str, Any]

    def digest(self) -> str:
        """SHA-256 of the messages (ties a result to the prompt text it was measured on)."""
        return hashlib.sha256(json.dumps(self.messages).encode()).hexdigest()[:16]


def _openai_messages(messages: Sequence[Any]) -> list[dict[str, str]]:
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return [{"role": roles[m.type], "content": str(m.content)} for m in messages]


_PLANNER_VARIANTS: tuple[tuple[str, str | None], ...] = (
    ("crafter:collect_wood", None),
    ("crafter:place_table", None),
    (
        "crafter:make_wood_pickaxe",
        "task success 0% over 10 held-out episodes; make_wood_pickaxe 0%: the pickaxe needs a "
        "nearby table and wood; the plan makes it before either exists.",
    ),
    ("crafter:collect_stone", None),
)

_STEPS: dict[str, dict[str, Any]] = {
    "collect_wood": {
        "id": "collect_wood",
        "description": "Walk to a tree and collect wood.",
        "predicate": {"kind": "inventory", "name": "wood", "at_least": 1},
        "method": "code",
    },
    "place_table": {
        "id": "place_table",
        "description": "Place a table on a free cell nearby.",
        "predicate": {"kind": "achievement", "name": "place_table", "at_least": 1},
        "method": "code",
    },
    "make_wood_pickaxe": {
        "id": "make_wood_pickaxe",
        "description": "Make a wood pickaxe at a nearby table.",
        "predicate": {"kind": "inventory", "name": "wood_pickaxe", "at_least": 1},
        "method": "code",
    },
}

#: Coder requests: (step, feedback on the previous code, the plan's earlier steps).
_CODER_VARIANTS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("collect_wood", None, ()),
    ("place_table", None, ("collect_wood",)),
    (
        "collect_wood",
        "success 0% of 5 episodes: returned False at once in 4 episodes: no tree visible.",
        (),
    ),
    ("make_wood_pickaxe", None, ("collect_wood", "place_table")),
)

_PREVIOUS_PLAN: dict[str, Any] = {
    "sub_actions": [
        {
            "id": "make_wood_pickaxe",
            "description": "Make a wood pickaxe.",
            "predicate": {"kind": "inventory", "name": "wood_pickaxe", "at_least": 1},
            "method": "code",
            "reason": "A fixed sequence.",
        }
    ],
}

_PREVIOUS_CODE = (
    "def run(api):\n"
    '    if not api.seen("tree"):\n'
    "        return False\n"
    '    api.move_to("tree")\n'
    "    return api.do()\n"
)


def _critic_variant(index: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    plans = [
        ("crafter:collect_wood", ["collect_wood"]),
        ("crafter:place_table", ["collect_wood", "place_table"]),
        ("crafter:make_wood_pickaxe", ["collect_wood", "place_table", "make_wood_pickaxe"]),
        ("crafter:collect_stone", ["collect_wood", "place_table", "make_wood_pickaxe", "mine"]),
    ]
    task, ids = plans[index]
    plan = {
        "sub_actions": [
            {
                "id": sid,
                "description": sid.replace("_", " "),
                "predicate": {"kind": "achievement", "name": task.split(":")[1], "at_least": 1},
                "method": "rl" if sid == "mine" else "code",
                "reason": "",
            }
            for sid in ids
        ]
    }
    rates = [0.9, 0.4, 0.1, 0.0][: len(ids)]
    evaluation = {
        "task_success_rate": rates[-1],
        "episodes": 10,
        "subaction_success": dict(zip(ids, rates, strict=True)),
        "failures": [
            {"seed": 100_000 + i, "subaction": ids[-1], "reason": "returned False: not seen"}
            for i in range(2 + index)
        ],
    }
    return task, plan, evaluation


def build_probes(model: str, max_tokens: int) -> dict[str, list[Probe]]:
    """The requests of each role, built with the project's prompts and the Crafter adapter's
    manual and skill API, constrained as the nodes constrain them."""
    from rlgpt.actions.grammar import code_grammar
    from rlgpt.envs.base import load_adapter
    from rlgpt.llm.local import LocalBackend
    from rlgpt.llm.settings import LLMSettings
    from rlgpt.nodes.prompts import (
        coder_code_messages,
        critic_messages,
        planner_messages,
        planner_schema,
        skills_doc,
        verdict_schema,
    )

    adapter = load_adapter("crafter")
    manual, skills = adapter.manual(), skills_doc(adapter.skill_specs())
    vocabulary = adapter.vocabulary()
    backend = LocalBackend()
    settings = LLMSettings(model=f"local:{model}", max_tokens=max_tokens)
    plan_body = backend.structured_kwargs(model, "Plan", planner_schema(vocabulary), settings)
    code_body = backend.grammar_kwargs(
        model, code_grammar(adapter.skill_specs(), vocabulary), settings
    )
    probes: dict[str, list[Probe]] = {role: [] for role in ROLES}
    for i, (task_name, feedback) in enumerate(_PLANNER_VARIANTS):
        task = adapter.task(task_name)
        previous = _PREVIOUS_PLAN if feedback else None
        messages = planner_messages(task.name, task.description, manual, skills, feedback, previous)
        probes["planner"].append(
            Probe("planner", i, task_name + (" (re-plan)" if feedback else ""),
                  _openai_messages(messages), plan_body["extra_body"])
        )  # fmt: skip
    for i, (step_id, feedback, earlier) in enumerate(_CODER_VARIANTS):
        messages = coder_code_messages(
            _STEPS[step_id],
            manual,
            skills,
            feedback,
            _PREVIOUS_CODE if feedback else None,
            earlier=[_STEPS[e] for e in earlier],
        )
        probes["coder"].append(
            Probe("coder", i, step_id + (" (fix)" if feedback else ""),
                  _openai_messages(messages), code_body["extra_body"])
        )  # fmt: skip
    for i in range(VARIANTS):
        task_name, plan, evaluation = _critic_variant(i)
        ids = [s["id"] for s in plan["sub_actions"]]
        body = backend.structured_kwargs(model, "Verdict", verdict_schema(ids), settings)
        messages = critic_messages(task_name, plan, evaluation, [])
        probes["critic"].append(
            Probe("critic", i, task_name, _openai_messages(messages), body["extra_body"])
        )
    return probes


def schedule(rounds: int, repeats: int) -> list[list[tuple[str, int, str]]]:
    """Per round, the calls in order as (role, variant, kind): each role's cold call, then
    `repeats` passes over the roles in turn, so the cache must hold every role's prefix.

    Variants rotate between rounds, so over `repeats + 1` rounds each variant is the cold
    call once and a repeated call `repeats` times: cold and repeated calls then cover the
    same answers.
    """
    n = repeats + 1
    plan: list[list[tuple[str, int, str]]] = []
    for r in range(rounds):
        calls = [(role, r % n, "cold") for role in ROLES]
        for j in range(1, repeats + 1):
            calls += [(role, (r + j) % n, "repeated") for role in ROLES]
        plan.append(calls)
    return plan
