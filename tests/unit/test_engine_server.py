"""The endpoint's request parsing, usage reports, prompt-prefix matching and grammar checks,
without a model."""

from __future__ import annotations

from typing import Any

import pytest

from rlgpt.llm import engine_server
from rlgpt.llm.engine import (
    Completion,
    _first_stop,
    _stop_overlap,
    common_prefix,
    schema_grammar,
)
from rlgpt.llm.engine_server import (
    BadRequest,
    GrammarCache,
    parse_messages,
    parse_sampling,
    timings_of,
    usage_of,
)
from rlgpt.llm.gbnf_check import GrammarError, check_grammar

SCHEMA = {
    "type": "object",
    "properties": {"route": {"type": "string", "enum": ["coder", "planner", "end"]}},
    "required": ["route"],
}


# --------------------------------------------------------------------------- messages


def test_messages_keep_order_and_text() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"text": "there"}]},
            {"role": "assistant", "content": None},
            {"role": "user", "content": "Again."},
        ]
    }
    assert parse_messages(body) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Again."},
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "non-empty list"),
        ({"messages": []}, "non-empty list"),
        ({"messages": "hello"}, "non-empty list"),
        ({"messages": ["hello"]}, "must be an object"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "unsupported message role 'tool'"),
        ({"messages": [{"content": "x"}]}, "unsupported message role None"),
        ({"messages": [{"role": "user", "content": 3}]}, "string or a list"),
    ],
)
def test_bad_messages_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_messages(body)


# --------------------------------------------------------------------------- sampling


def test_sampling_defaults() -> None:
    sampling = parse_sampling({"messages": []}, GrammarCache())
    assert sampling.max_tokens == 768 and sampling.temperature == 0.0
    assert sampling.seed == 0 and sampling.repeat_penalty == 1.0
    assert sampling.grammar is None and sampling.stop == ()


def test_sampling_values_from_the_body() -> None:
    body = {
        "max_tokens": 50,
        "max_completion_tokens": 20,
        "temperature": 0.7,
        "seed": 11,
        "repeat_penalty": 1.2,
        "top_p": 0.5,
        "top_k": 7,
        "stop": "\n\n",
    }
    sampling = parse_sampling(body, GrammarCache())
    assert sampling.max_tokens == 20  # the newer field wins
    assert (sampling.temperature, sampling.seed, sampling.repeat_penalty) == (0.7, 11, 1.2)
    assert (sampling.top_p, sampling.top_k) == (0.5, 7)
    assert sampling.stop == ("\n\n",)
    assert parse_sampling({"stop": ["a", "b"]}, GrammarCache()).stop == ("a", "b")


def test_raw_grammar_is_passed_through() -> None:
    grammar = 'root ::= "yes" | "no"'
    assert parse_sampling({"grammar": grammar}, GrammarCache()).grammar == grammar


def test_response_format_json_object_with_schema() -> None:
    fmt = {"type": "json_object", "schema": SCHEMA}
    grammar = parse_sampling({"response_format": fmt}, GrammarCache()).grammar
    assert grammar == schema_grammar(SCHEMA)
    assert '"\\"coder\\""' in grammar  # the enum values are spelled out


def test_response_format_json_object_without_schema_is_any_object() -> None:
    grammar = parse_sampling({"response_format": {"type": "json_object"}}, GrammarCache()).grammar
    assert grammar == schema_grammar({"type": "object"})


def test_response_format_json_schema() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "Verdict", "schema": SCHEMA}}
    assert parse_sampling({"response_format": fmt}, GrammarCache()).grammar == schema_grammar(
        SCHEMA
    )


@pytest.mark.parametrize(
    "fmt", [{"type": "text"}, {"type": "json_schema", "json_schema": {"name": "free"}}]
)
def test_response_formats_without_a_constraint(fmt: dict[str, Any]) -> None:
    assert parse_sampling({"response_format": fmt}, GrammarCache()).grammar is None


def test_a_raw_grammar_beats_the_response_format() -> None:
    body = {"grammar": 'root ::= "x"', "response_format": {"type": "json_object"}}
    assert parse_sampling(body, GrammarCache()).grammar == 'root ::= "x"'


def test_schema_grammars_are_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake(schema: dict[str, Any]) -> str:
        calls.append(schema)
        return 'root ::= "{}"'

    monkeypatch.setattr(engine_server, "_schema_grammar", fake)
    grammars = GrammarCache()
    reordered = {"required": ["route"], **SCHEMA}
    first = grammars.for_schema(SCHEMA)
    assert grammars.for_schema(reordered) == first and len(calls) == 1
    grammars.for_schema({"type": "array"})
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"grammar": 5}, "GBNF string"),
        ({"response_format": "json"}, "must be an object"),
        ({"response_format": {"type": "xml"}}, "unsupported response_format type 'xml'"),
        ({"response_format": {"type": "json_schema", "json_schema": "x"}}, "must be an object"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": [1]}}},
            "schema must be an object",
        ),
        ({"response_format": {"type": "json_object", "schema": {"type": "nonsense"}}}, "schema"),
        ({"response_format": {"type": "json_object", "schema": {"$ref": "#/$defs/x"}}}, "schema"),
        ({"response_format": {"type": "json_object", "schema": {"properties": 5}}}, "schema"),
        ({"stop": 5}, "`stop` must be"),
        ({"stop": ["a", 1]}, "`stop` must be"),
        ({"max_tokens": -3}, "must be positive"),
        ({"temperature": "hot"}, "bad sampling parameter"),
        ({"max_tokens": "many"}, "bad sampling parameter"),
    ],
)
def test_bad_sampling_is_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_sampling(body, GrammarCache())


# --------------------------------------------------------------------------- usage


def _done(prompt: int = 120, cached: int = 100, completion: int = 30) -> Completion:
    return Completion(
        text="ok",
        finish_reason="stop",
        prompt_tokens=prompt,
        cached_tokens=cached,
        completion_tokens=completion,
        prompt_seconds=0.25,
        generate_seconds=1.5,
    )


def test_usage_reports_cached_prompt_tokens() -> None:
    assert usage_of(_done()) == {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    assert usage_of(_done(cached=0))["prompt_tokens_details"] == {"cached_tokens": 0}


def test_timings_count_only_evaluated_prompt_tokens() -> None:
    assert timings_of(_done()) == {
        "prompt_n": 20,
        "prompt_ms": 250.0,
        "predicted_n": 30,
        "predicted_ms": 1500.0,
    }


# --------------------------------------------------------------------------- prefix


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [
        ([], [], 0),
        ([1, 2, 3], [], 0),
        ([1, 2, 3], [1, 2, 3], 3),
        ([1, 2, 3], [1, 2, 3, 4, 5], 3),
        ([1, 2, 3, 4], [1, 2, 9, 4], 2),
        ([7, 1], [1, 7], 0),
        ((1, 2), [1, 2, 3], 2),
    ],
)
def test_common_prefix(a: list[int], b: list[int], n: int) -> None:
    assert common_prefix(a, b) == n == common_prefix(b, a)


# --------------------------------------------------------------------------- stop strings


def test_stop_strings_cut_and_hold_back() -> None:
    assert _first_stop("abc\n\nmore", ("\n\n", "c")) == 2
    assert _first_stop("abc", ("x", "")) is None
    # The end of the text that may start a stop string is not streamed yet.
    assert _stop_overlap("answer\n", ("\n\n",)) == 1
    assert _stop_overlap("answer END", ("ENDING", "\n")) == 3
    assert _stop_overlap("answer", ("\n\n",)) == 0
    assert _stop_overlap("a", ()) == 0


# --------------------------------------------------------------------------- grammars


@pytest.mark.parametrize(
    "grammar",
    [
        'root ::= "yes" | "no"',
        'root ::= ("a" | "b")+ "c"\n',
        'root ::= (\n  "a"\n  | "b"\n)  # a comment\n',
        'root::="a" . [0-9]? [^"\\\\] "\\u00e9\\x41\\t"',
        'root ::= ("a"{0,3}){0,3} "b"{2} "c"{1,} "d"{0,4}',
        'r-o-o-t ::= "a"\nroot ::= r-o-o-t',
        'root ::= "x" root',  # right recursion is fine
        'root ::= ""',
        schema_grammar(SCHEMA),
        schema_grammar({"type": "object"}),
    ],
)
def test_usable_grammars_pass(grammar: str) -> None:
    check_grammar(grammar)


@pytest.mark.parametrize(
    ("grammar", "message"),
    [
        ("", "no rules"),
        ("   # only a comment\n", "no rules"),
        ("not gbnf", "expecting ::="),
        ('root ::= "a"\n  | "b"', "expecting name"),
        ("root ::= foo", "undefined rule identifier 'foo'"),
        ('a ::= "x"', "no 'root' rule"),
        ('root ::= x_y\nx_y ::= "a"', "expecting newline or end"),
        ("root ::= [a-z", "unexpected end of input"),
        ('root ::= ( "a" ', "expecting '\\)'"),
        ('root ::= "\\q"', "unknown escape"),
        ('root ::= "\\x4"', "expecting 2 hex chars"),
        ('root ::= * "x"', "expecting preceding item"),
        ('root ::= root "x" | "y"', "left recursion"),
        ('root ::= a\na ::= b\nb ::= a "x"', "left recursion"),
        ('root ::= x* root\nx ::= "a"', "left recursion"),
        ('root ::= "a"{5,2}', "maximum is below its minimum"),
        ('root ::= "a"{2000}', "too many repetitions"),
        ('root ::= "a"{2,2001}', "too many repetitions"),
        ('root ::= "a"{1,99999999999999999999999}', "out of range"),
        ("root ::= [^\\x00-\\U0010FFFF]", "matches no character"),
        ("root ::= [b-a]", "matches no character"),
        ('root ::= "\\x00"', "U\\+0000 can never be produced"),
        ('root ::= "a\x00"', "NUL"),
        ("root ::= <[5]>", "needs a vocabulary"),
        ("root ::= " + "(" * 5000 + '"a"' + ")" * 5000, "nests too deeply"),
    ],
)
def test_unusable_grammars_are_refused(grammar: str, message: str) -> None:
    with pytest.raises(GrammarError, match=message):
        check_grammar(grammar)


def test_token_elements_go_through_the_token_check() -> None:
    seen: list[tuple[str, bool]] = []

    def check(spec: str, negated: bool) -> str | None:
        seen.append((spec, negated))
        if spec == "<[2]>" and not negated:
            return "an end-of-generation token cannot be required"
        return None

    check_grammar('root ::= <|im_start|> !<[2]>{3} "x"', token_check=check)
    assert seen == [("<|im_start|>", False), ("<[2]>", True)]
    with pytest.raises(GrammarError, match="end-of-generation"):
        check_grammar("root ::= <[2]>", token_check=check)
