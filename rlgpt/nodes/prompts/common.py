"""What every role's prompt shares: character budgets, the skills doc, manual lines."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from rlgpt.envs.base import Predicate, SkillSpec

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


def few_shot(system: str, examples: Sequence[tuple[str, str]], request: str) -> list[BaseMessage]:
    """The system prompt, worked examples as (task, answer) turns, then the request."""
    shots: list[BaseMessage] = []
    for task, answer in examples:
        shots += [HumanMessage(content=task), AIMessage(content=answer)]
    return [SystemMessage(content=system), *shots, HumanMessage(content=request)]
