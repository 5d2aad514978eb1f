"""GBNF grammar of code actions: `def run(api):` programs that only call the skill API."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rlgpt.envs.base import SkillParam, SkillSpec

_INDENT = "    "


@dataclass(frozen=True)
class CodeGrammarLimits:
    """Bounds that keep every program the grammar admits short enough to finish."""

    max_statements: int = 8
    max_block: int = 5
    max_depth: int = 3
    max_int: int = 99


def _lit(text: str) -> str:
    """A GBNF string literal for `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _rule_name(*parts: str) -> str:
    """A GBNF rule name (letters, digits and dashes) from identifier parts."""
    return "-".join(re.sub(r"[^a-zA-Z0-9]+", "-", p).strip("-").lower() for p in parts if p)


def _py_str(word: str) -> str:
    """The Python string literal of `word`, as code would spell it."""
    return json.dumps(word, ensure_ascii=False)


def _vocab_for(param: SkillParam, vocabulary: dict[str, list[str]]) -> list[str]:
    """Words a str parameter may take: its choices, else the vocabulary list named after
    it (`item` -> `items`), else every vocabulary word."""
    if param.choices:
        return list(param.choices)
    for key in (param.name, f"{param.name}s", f"{param.name}es"):
        if vocabulary.get(key):
            return list(vocabulary[key])
    words: list[str] = []
    for values in vocabulary.values():
        words.extend(w for w in values if w not in words)
    return words


def _int_rule(max_int: int) -> str:
    """Alternatives for the integer literals 0..max_int (max_int < 1000)."""
    if max_int < 10:
        return f"[0-{max_int}]"
    tens, ones = divmod(max_int, 10)
    alts = ["[0-9]"]
    if tens > 1:
        alts.append(f"[1-{tens - 1}] [0-9]")
    if tens >= 1 and tens < 10:
        alts.append(f'"{tens}" [0-{ones}]')
    if max_int >= 100:
        alts = ["[0-9]", "[1-9] [0-9]", "[1-9] [0-9] [0-9]"]
    return " | ".join(alts)


def code_grammar(
    skill_specs: Sequence[SkillSpec],
    vocabulary: dict[str, list[str]],
    limits: CodeGrammarLimits | None = None,
) -> str:
    """A GBNF grammar admitting code actions over the given skill API.

    A program is `def run(api):`, one to `max_statements` statements, and a final
    `return True|False`. A statement is a skill call `api.<skill>(<literals>)`, a
    `return` (inside blocks), or an `if` (optional `else`), `while` or
    `for _ in range(<n>):` block of up to `max_block` statements, nested at most
    `max_depth` deep. Conditions test
    skill calls returning `bool` (optionally `not`) or compare skill calls returning
    `int` with an integer literal, joined by at most one `and`/`or`. Arguments are
    literals: a string parameter takes its choices or the matching vocabulary words, an
    int parameter a small integer; parameters with defaults may be left out at the end.

    Raises:
        ValueError: no skill to call.
    """
    limits = limits or CodeGrammarLimits()
    if not skill_specs:
        raise ValueError("code_grammar needs at least one skill")
    rules: dict[str, str] = {}

    call_rules: dict[str, str] = {}
    for spec in skill_specs:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", spec.name):
            raise ValueError(f"skill name {spec.name!r} is not an identifier")
        arg_rules: list[str] = []
        for param in spec.params:
            name = _rule_name("arg", spec.name, param.name)
            if param.type == "int":
                ints = [c for c in param.choices if re.fullmatch(r"-?[0-9]+", c)]
                rules[name] = " | ".join(_lit(c) for c in ints) if ints else "int"
            else:
                words = _vocab_for(param, vocabulary)
                if words:
                    rules[name] = " | ".join(_lit(_py_str(w)) for w in words)
                else:
                    rules[name] = '"\\"" [a-z_] [a-z0-9_]{0,23} "\\""'
            arg_rules.append(name)
        required = sum(1 for p in spec.params if p.default is None)
        # Trailing parameters with defaults nest as optional groups: (", " b (", " c)?)?
        tail = ""
        for index in range(len(arg_rules) - 1, required - 1, -1):
            sep = '", " ' if index > 0 else ""
            tail = f"({sep}{arg_rules[index]}{(' ' + tail) if tail else ''})?"
        head = ' ", " '.join(arg_rules[:required])
        body = " ".join(part for part in (head, tail) if part)
        call = _rule_name("call", spec.name)
        rules[call] = f'{_lit(f"api.{spec.name}(")} {body + " " if body else ""}")"'
        call_rules[spec.name] = call

    actions = [s.name for s in skill_specs if s.kind != "perception" or s.steps_env]
    actions = actions or [s.name for s in skill_specs]
    bool_calls = [s.name for s in skill_specs if s.returns == "bool"]
    int_calls = [s.name for s in skill_specs if s.returns == "int"]

    rules["action"] = " | ".join(call_rules[name] for name in actions)
    atoms: list[str] = []
    if bool_calls:
        rules["bool-call"] = " | ".join(call_rules[name] for name in bool_calls)
        atoms.append('"not "? bool-call')
    if int_calls:
        rules["int-call"] = " | ".join(call_rules[name] for name in int_calls)
        rules["cmp"] = '"<" | "<=" | ">" | ">=" | "==" | "!="'
        atoms.append('int-call " " cmp " " int')
    if atoms:
        rules["atom"] = " | ".join(atoms)
        rules["cond"] = 'atom ((" and " | " or ") atom)?'
    rules["int"] = _int_rule(limits.max_int)
    rules["count"] = '[1-9] | [1-2] [0-9] | "30"'
    rules["bool"] = '"True" | "False"'

    for level in range(1, limits.max_depth + 2):
        indent = _lit(_INDENT * level)
        # A top-level return would only cut the program short: it ends every program instead.
        simple = "action" if level == 1 else '(action | "return " bool)'
        alternatives = [f'{indent} {simple} "\\n"']
        leads = [f'{indent} action "\\n"']
        if level <= limits.max_depth:
            inner, loop_inner = f"block-{level + 1}", f"loop-block-{level + 1}"
            loops = [f'"for _ in range(" count "):\\n" {loop_inner}']
            if atoms:
                loops.insert(0, f'"while " cond ":\\n" {loop_inner}')
                branch = f'{indent} "if " cond ":\\n" {inner} ({indent} "else:\\n" {inner})?'
                alternatives.append(branch)
                leads.append(branch)
            alternatives.append(f"{indent} ({' | '.join(loops)})")
            leads.append(f"{indent} ({' | '.join(loops)})")
        rules[f"line-{level}"] = " | ".join(alternatives)
        if level > 1:
            rules[f"block-{level}"] = f"line-{level}{{1,{limits.max_block}}}"
            # A loop body never starts with `return`: such a loop would do nothing but exit
            # (a tiny model otherwise writes `while c: return False`).
            rules[f"lead-{level}"] = " | ".join(leads)
            rules[f"loop-block-{level}"] = f"lead-{level} line-{level}{{0,{limits.max_block - 1}}}"

    rules["root"] = (
        f'"def run(api):\\n" line-1{{1,{limits.max_statements}}} '
        f'{_lit(_INDENT)} "return " bool "\\n"'
    )
    order = ["root", *[name for name in rules if name != "root"]]
    return "\n".join(f"{name} ::= {rules[name]}" for name in order) + "\n"
