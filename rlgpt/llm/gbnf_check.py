"""A check of GBNF grammars before llama.cpp's grammar sampler sees them.

llama.cpp turns a grammar it cannot parse into a null sampler and crashes on the first
token, and aborts the process when a grammar reaches a state no token can satisfy. So
every grammar is checked here first, with the parser's own rules (syntax, undefined
rules, the root rule, repetition limits, left recursion), and refused when one of its
elements can never be produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: llama.cpp's limit on repetition counts (`MAX_REPETITION_THRESHOLD`).
_MAX_REPETITION = 2000
#: Most grammar elements accepted (after repetitions are expanded), to bound memory.
_MAX_ELEMENTS = 1_000_000
#: The code points a token can produce (0 ends a token's text inside the sampler).
_LOW, _HIGH = 1, 0x10FFFF
_UINT64_MAX = (1 << 64) - 1

#: Checks one token element (`<[id]>` or `<text>`, negated with `!`): an error or None.
TokenCheck = Callable[[str, bool], str | None]


class GrammarError(ValueError):
    """A GBNF grammar the sampler cannot use."""


def _is_word(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "-")


class _GrammarParser:
    """A parse of GBNF text that follows llama.cpp's parser step by step.

    Rules are kept in llama.cpp's flat form: lists of ("ref", rule id), ("term", 0),
    ("alt", 0) and ("end", 0) elements, so the left-recursion check sees the same rules.
    """

    def __init__(self, text: str, token_check: TokenCheck | None) -> None:
        self.src = text
        self.token_check = token_check
        self.symbols: dict[str, int] = {}
        self.rules: dict[int, list[tuple[str, int]]] = {}
        self.size = 0

    def ch(self, i: int) -> str:
        return self.src[i] if i < len(self.src) else ""

    def fail(self, what: str, i: int) -> GrammarError:
        return GrammarError(f"{what} at {self.src[i : i + 30]!r}" if i < len(self.src) else what)

    def symbol_id(self, name: str) -> int:
        return self.symbols.setdefault(name, len(self.symbols))

    def new_symbol(self, base: str) -> int:
        next_id = len(self.symbols)
        self.symbols[f"{base}_{next_id}"] = next_id
        return next_id

    def add_rule(self, rule_id: int, rule: list[tuple[str, int]]) -> None:
        self.size += len(rule)
        if self.size > _MAX_ELEMENTS:
            raise GrammarError("the grammar is too large")
        self.rules[rule_id] = rule

    def space(self, i: int, newline_ok: bool) -> int:
        while True:
            c = self.ch(i)
            if c == "#":
                while self.ch(i) not in ("", "\r", "\n"):
                    i += 1
            elif c in (" ", "\t") or (newline_ok and c in ("\r", "\n")):
                i += 1
            else:
                return i

    def name(self, i: int) -> int:
        j = i
        while _is_word(self.ch(j)):
            j += 1
        if j == i:
            raise self.fail("expecting name", i)
        return j

    def integer(self, i: int) -> tuple[int, int]:
        j = i
        while self.ch(j).isascii() and self.ch(j).isdigit():
            j += 1
        if j == i:
            raise self.fail("expecting integer", i)
        value = int(self.src[i:j])
        if value > _UINT64_MAX:
            raise self.fail("integer out of range", i)
        return value, j

    def char(self, i: int) -> tuple[int, int]:
        c = self.ch(i)
        if c == "\\":
            e = self.ch(i + 1)
            sizes = {"x": 2, "u": 4, "U": 8}
            if e in sizes:
                digits = self.src[i + 2 : i + 2 + sizes[e]]
                if len(digits) != sizes[e] or any(
                    d not in "0123456789abcdefABCDEF" for d in digits
                ):
                    raise self.fail(f"expecting {sizes[e]} hex chars", i + 2)
                return int(digits, 16), i + 2 + sizes[e]
            plain = {"t": 9, "r": 13, "n": 10, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45}
            if e in plain:
                return plain[e], i + 2
            raise self.fail("unknown escape", i)
        if c:
            return ord(c), i + 1
        raise GrammarError("unexpected end of input")

    def token(self, i: int, negated: bool) -> int:
        if self.ch(i) != "<":
            raise self.fail("expecting '<'", i)
        j = i + 1
        if self.ch(j) == "[":
            _, j = self.integer(j + 1)
            if self.ch(j) != "]":
                raise self.fail("expecting ']'", j)
            if self.ch(j + 1) != ">":
                raise self.fail("expecting '>'", j + 1)
            j += 2
        else:
            while self.ch(j) not in ("", ">"):
                j += 1
            if self.ch(j) != ">":
                raise self.fail("expecting '>'", j)
            j += 1
        spec = self.src[i:j]
        if self.token_check is None:
            raise GrammarError(f"token element {spec} needs a vocabulary")
        problem = self.token_check(spec, negated)
        if problem:
            raise GrammarError(f"token element {spec}: {problem}")
        return j

    def sequence(self, i: int, rule_name: str, rule: list[tuple[str, int]], nested: bool) -> int:
        last_start = len(rule)
        n_prev = 1

        def repeat(low: int, high: int | None) -> None:
            nonlocal n_prev
            if last_start == len(rule):
                raise self.fail("expecting preceding item to */+/?/{", i)
            if high is not None and high < low:
                raise self.fail("the repetition's maximum is below its minimum", i)
            prev = rule[last_start:]
            total = high if high is not None and high > 0 else (low if low > 0 else 1)
            if n_prev * total >= _MAX_REPETITION:
                raise self.fail("too many repetitions", i)
            if len(rule) + len(prev) * max(low - 1, 0) + self.size > _MAX_ELEMENTS:
                raise GrammarError("the grammar is too large")
            if low == 0:
                del rule[last_start:]
            else:
                rule.extend(prev * (low - 1))
            n_opt = 1 if high is None else high - low
            last_rec = 0
            for k in range(n_opt):
                rec_id = self.new_symbol(rule_name)
                rec = list(prev)
                if k > 0 or high is None:
                    rec.append(("ref", rec_id if high is None else last_rec))
                self.add_rule(rec_id, [*rec, ("alt", 0), ("end", 0)])
                last_rec = rec_id
            if n_opt > 0:
                rule.append(("ref", last_rec))
            n_prev *= total

        while True:
            c = self.ch(i)
            if c == '"':
                i += 1
                last_start, n_prev = len(rule), 1
                while self.ch(i) != '"':
                    if not self.ch(i):
                        raise GrammarError("unexpected end of input")
                    code, i = self.char(i)
                    if not _LOW <= code <= _HIGH:
                        raise self.fail(f"character U+{code:04X} can never be produced", i)
                    rule.append(("term", 0))
                i = self.space(i + 1, nested)
            elif c == "[":
                i += 1
                negated = self.ch(i) == "^"
                i += negated
                last_start, n_prev = len(rule), 1
                ranges: list[tuple[int, int]] = []
                start = i
                while self.ch(i) != "]":
                    if not self.ch(i):
                        raise GrammarError("unexpected end of input")
                    first, i = self.char(i)
                    last = first
                    if self.ch(i) == "-" and self.ch(i + 1) != "]":
                        if not self.ch(i + 1):
                            raise GrammarError("unexpected end of input")
                        last, i = self.char(i + 1)
                    ranges.append((first, last))
                    rule.append(("term", 0))
                if ranges and not _class_matches(ranges, negated):
                    raise self.fail("the character class matches no character", start)
                i = self.space(i + 1, nested)
            elif c in ("<", "!"):
                negated = c == "!"
                end = self.token(i + negated, negated)
                last_start, n_prev = len(rule), 1
                rule.append(("term", 0))
                i = self.space(end, nested)
            elif _is_word(c):
                end = self.name(i)
                ref = self.symbol_id(self.src[i:end])
                i = self.space(end, nested)
                last_start, n_prev = len(rule), 1
                rule.append(("ref", ref))
            elif c == "(":
                i = self.space(i + 1, True)
                before = len(self.symbols)
                sub_id = self.new_symbol(rule_name)
                i = self.alternates(i, rule_name, sub_id, True)
                n_prev = max(1, len(self.symbols) - before)
                last_start = len(rule)
                rule.append(("ref", sub_id))
                if self.ch(i) != ")":
                    raise self.fail("expecting ')'", i)
                i = self.space(i + 1, nested)
            elif c == ".":
                last_start, n_prev = len(rule), 1
                rule.append(("term", 0))
                i = self.space(i + 1, nested)
            elif c in ("*", "+", "?"):
                i = self.space(i + 1, nested)
                repeat(*{"*": (0, None), "+": (1, None), "?": (0, 1)}[c])
            elif c == "{":
                i = self.space(i + 1, nested)
                if not (self.ch(i).isascii() and self.ch(i).isdigit()):
                    raise self.fail("expecting an int", i)
                low, i = self.integer(i)
                i = self.space(i, nested)
                high: int | None = None
                if self.ch(i) == "}":
                    high = low
                    i = self.space(i + 1, nested)
                elif self.ch(i) == ",":
                    i = self.space(i + 1, nested)
                    if self.ch(i).isascii() and self.ch(i).isdigit():
                        high, i = self.integer(i)
                        i = self.space(i, nested)
                    if self.ch(i) != "}":
                        raise self.fail("expecting '}'", i)
                    i = self.space(i + 1, nested)
                else:
                    raise self.fail("expecting ','", i)
                # Newer llama.cpp reads a maximum over the limit as "no maximum"; older
                # releases fail on it, so it is refused.
                if low > _MAX_REPETITION or (high is not None and high > _MAX_REPETITION):
                    raise self.fail("too many repetitions", i)
                repeat(low, high)
            else:
                return i

    def alternates(self, i: int, rule_name: str, rule_id: int, nested: bool) -> int:
        rule: list[tuple[str, int]] = []
        i = self.sequence(i, rule_name, rule, nested)
        while self.ch(i) == "|":
            rule.append(("alt", 0))
            i = self.space(i + 1, True)
            i = self.sequence(i, rule_name, rule, nested)
        rule.append(("end", 0))
        self.add_rule(rule_id, rule)
        return i

    def rule(self, i: int) -> int:
        end = self.name(i)
        name = self.src[i:end]
        j = self.space(end, False)
        rule_id = self.symbol_id(name)
        if self.src[j : j + 3] != "::=":
            raise self.fail("expecting ::=", j)
        j = self.alternates(self.space(j + 3, True), name, rule_id, False)
        if self.ch(j) == "\r":
            j += 2 if self.ch(j + 1) == "\n" else 1
        elif self.ch(j) == "\n":
            j += 1
        elif self.ch(j):
            raise self.fail("expecting newline or end", j)
        return self.space(j, True)

    def parse(self, root: str) -> None:
        i = self.space(0, True)
        while self.ch(i):
            i = self.rule(i)
        if not self.rules:
            raise GrammarError("the grammar has no rules")
        names = {v: k for k, v in self.symbols.items()}
        n_rules = max(self.rules) + 1
        for rule_id in range(n_rules):
            if rule_id not in self.rules:
                raise GrammarError(f"undefined rule {names.get(rule_id, rule_id)!r}")
            for kind, value in self.rules[rule_id]:
                if kind == "ref" and value not in self.rules:
                    raise GrammarError(f"undefined rule identifier {names.get(value, value)!r}")
        if root not in self.symbols:
            raise GrammarError(f"the grammar has no {root!r} rule")
        visited = [False] * n_rules
        in_progress = [False] * n_rules
        may_be_empty = [False] * n_rules
        for rule_id in range(n_rules):
            if not visited[rule_id] and self._left_recursive(
                rule_id, visited, in_progress, may_be_empty
            ):
                raise GrammarError(
                    f"left recursion in rule {names.get(rule_id, rule_id)!r} is not supported"
                )

    def _left_recursive(
        self, rule_id: int, visited: list[bool], in_progress: list[bool], may_be_empty: list[bool]
    ) -> bool:
        if in_progress[rule_id]:
            return True
        in_progress[rule_id] = True
        rule = self.rules[rule_id]
        at_start = True
        for kind, _ in rule:
            if kind in ("alt", "end"):
                if at_start:
                    may_be_empty[rule_id] = True
                    break
                at_start = True
            else:
                at_start = False
        leftmost = True
        for kind, value in rule:
            if kind == "ref" and leftmost:
                if self._left_recursive(value, visited, in_progress, may_be_empty):
                    return True
                if not may_be_empty[value]:
                    leftmost = False
            elif kind in ("alt", "end"):
                leftmost = True
            else:
                leftmost = False
        in_progress[rule_id] = False
        visited[rule_id] = True
        return False


def _class_matches(ranges: Sequence[tuple[int, int]], negated: bool) -> bool:
    """Whether a character class matches some character a token can produce."""
    spans = sorted((max(lo, _LOW), min(hi, _HIGH)) for lo, hi in ranges)
    spans = [(lo, hi) for lo, hi in spans if lo <= hi]
    if not negated:
        return bool(spans)
    covered = _LOW - 1
    for lo, hi in spans:
        if lo > covered + 1:
            return True
        covered = max(covered, hi)
    return covered < _HIGH


def check_grammar(text: str, root: str = "root", token_check: TokenCheck | None = None) -> None:
    """Raise GrammarError unless llama.cpp's grammar sampler can safely use `text`.

    The checks are those of llama.cpp's parser and grammar set-up (syntax, rule references,
    the `root` rule, repetition limits, no left recursion), and that no character class or
    literal needs a character no token can produce. Token elements (`<[id]>`, `<text>`,
    `!<...>`) are refused unless `token_check` accepts them.
    """
    if "\x00" in text:
        raise GrammarError("the grammar holds a NUL character")
    try:
        _GrammarParser(text, token_check).parse(root)
    except RecursionError:
        raise GrammarError("the grammar nests too deeply") from None
