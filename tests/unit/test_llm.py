"""Unit tests of the model layer with the scripted chat model and a loopback HTTP endpoint:
parsing, retries, errors, cache, accounting, the code grammar and the prompts."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from langchain_core.exceptions import ContextOverflowError
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from rlgpt.actions.grammar import CodeGrammarLimits, code_grammar
from rlgpt.envs.base import SkillParam, SkillSpec
from rlgpt.graph.context import Context
from rlgpt.graph.schemas import MAX_PLAN_STEPS, CodeActionAnswer, Plan, RLSetup, Verdict
from rlgpt.llm import (
    LLMError,
    LLMSettings,
    ask_code,
    ask_structured,
    clean_code_answer,
    restrict_schema,
    split_model,
)
from rlgpt.llm.local import LocalBackend, bounded_json_schema
from rlgpt.llm.local_server import URL_ENV, shared_base_url
from rlgpt.llm.openai_compat import OpenAIBackend, strict_json_schema
from rlgpt.nodes import prompts as prompt_module
from rlgpt.nodes.prompts import (
    coder_code_messages,
    coder_rl_messages,
    critic_messages,
    planner_messages,
    planner_schema,
    rl_setup_schema,
    skills_doc,
    verdict_schema,
)

try:  # the HTTP library the installed OpenAI client is built on
    import httpx2 as http
except ImportError:  # pragma: no cover
    import httpx as http  # type: ignore[no-redef]

from tests.fakes import ScriptedChatModel, scripted_backend
from tests.helpers import SPECS

VERDICT_JSON = '{"route": "coder", "subaction_ids": ["get_wood"], "feedback": "retry"}'

VOCAB = {"targets": ["tree", "water"], "items": ["wood", "sapling"]}


@pytest.fixture
def grammar_scripted() -> Iterator[ScriptedChatModel]:
    """A scripted model on a backend that claims grammar support."""
    with scripted_backend("scripted_g", supports_grammar=True) as model:
        yield model


def settings(**overrides: Any) -> LLMSettings:
    return LLMSettings(model="scripted:any", **{"max_retries": 2, **overrides})


def request() -> http.Request:
    return http.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def status_error(cls: type[openai.APIStatusError], code: int) -> openai.APIStatusError:
    response = http.Response(code, request=request(), json={"error": {"message": "nope"}})
    return cls("nope", response=response, body=None)


MESSAGES = [SystemMessage(content="judge"), HumanMessage(content="task")]


# --------------------------------------------------------------------------- a loopback endpoint


@dataclass
class Reply:
    """One scripted HTTP reply of the loopback endpoint."""

    status: int = 200
    text: str = VERDICT_JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    """One request the loopback endpoint received."""

    at: float
    headers: dict[str, str]
    body: dict[str, Any]


class Endpoint(ThreadingHTTPServer):
    """A chat-completions endpoint on 127.0.0.1 that plays scripted replies in order."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EndpointHandler)
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def settings(self, **overrides: Any) -> LLMSettings:
        """Settings whose model is this endpoint (through the OpenAI-compatible backend)."""
        port = self.server_address[1]
        return LLMSettings(model=f"http://127.0.0.1:{port}/v1#m", **{"timeout": 10, **overrides})


class _EndpointHandler(BaseHTTPRequestHandler):
    server: Endpoint

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with self.server.lock:
            headers = {name.lower(): value for name, value in self.headers.items()}
            self.server.seen.append(Seen(time.monotonic(), headers, body))
            script = self.server.replies
            reply = script.pop(0) if script else Reply(500, "out of scripted replies")
        time.sleep(reply.delay)
        if reply.status == 200:
            payload: dict[str, Any] = {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
        else:
            payload = {"error": {"message": reply.text, "type": "error"}}
        data = json.dumps(payload).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test): nobody reads the reply

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the tests read `Endpoint.seen` instead."""


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A loopback chat-completions endpoint; replies are set by the test."""
    server = Endpoint()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# --------------------------------------------------------------------------- settings


def test_split_model_forms() -> None:
    assert split_model("local:smollm2") == ("local", "smollm2")
    assert split_model("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert split_model("http://127.0.0.1:8000/v1#qwen") == (
        "openai",
        "http://127.0.0.1:8000/v1#qwen",
    )
    with pytest.raises(ValueError, match="malformed model string"):
        split_model("smollm2")


def test_settings_for_role_reads_the_context() -> None:
    context = Context(
        coder_model="openai:gpt-x", llm_temperature=0.3, llm_max_tokens=99, llm_cache_dir="c"
    )
    coder = context.llm_settings("coder")
    assert (coder.model, coder.temperature, coder.max_tokens, coder.cache_dir) == (
        "openai:gpt-x",
        0.3,
        99,
        "c",
    )
    assert context.llm_settings("planner").model == "local:qwen2.5-coder-1.5b"
    assert Context(seed=7).llm_settings("critic").seed == 7
    with pytest.raises(ValueError, match="unknown model role"):
        context.llm_settings("rl_trainer")  # type: ignore[arg-type]


def test_every_settings_field_is_described() -> None:
    assert all(f.description for f in LLMSettings.model_fields.values())


# --------------------------------------------------------------------------- parsing


def test_fenced_json_with_raw_control_characters(scripted: ScriptedChatModel) -> None:
    scripted.answers = ['Sure!\n```json\n{"route": "end", "feedback": "line one\nline\ttwo"}\n```']
    result = ask_structured("critic", settings(), Verdict, MESSAGES)
    assert result.value.route == "end"
    assert result.value.feedback == "line one\nline\ttwo"
    assert not result.cached
    assert scripted.call_kwargs[0] == {"schema_name": "Verdict"}


def test_answer_in_tool_call_args(scripted: ScriptedChatModel) -> None:
    scripted.answers = [
        AIMessage(
            content="",
            tool_calls=[{"name": "Verdict", "args": {"route": "planner"}, "id": "call_1"}],
        )
    ]
    result = ask_structured("critic", settings(), Verdict, MESSAGES)
    assert result.value.route == "planner"
    assert json.loads(result.raw) == {"route": "planner"}


def test_invalid_answer_is_retried_with_the_reason(scripted: ScriptedChatModel) -> None:
    scripted.answers = ['{"route": "somewhere"}', VERDICT_JSON]
    result = ask_structured("critic", settings(), Verdict, MESSAGES)
    assert result.value.subaction_ids == ["get_wood"]
    assert result.usage["calls"] == 2
    retry_prompt = scripted.prompts[1]
    assert retry_prompt[: len(MESSAGES)] == MESSAGES
    assert isinstance(retry_prompt[-2], AIMessage) and "somewhere" in str(retry_prompt[-2].content)
    assert "route" in str(retry_prompt[-1].content) and "rejected" in str(retry_prompt[-1].content)


def test_invalid_answers_exhaust_retries(scripted: ScriptedChatModel) -> None:
    scripted.answers = ["no json here", "still none"]
    with pytest.raises(LLMError) as info:
        ask_structured("critic", settings(max_retries=1), Verdict, MESSAGES)
    assert info.value.kind == "invalid"
    assert info.value.raw == "still none"
    assert info.value.usage is not None and info.value.usage["calls"] == 2
    assert scripted.remaining == 0


def test_cut_off_answer_is_truncated(scripted: ScriptedChatModel) -> None:
    cut = AIMessage(content='{"route": "co', response_metadata={"finish_reason": "length"})
    scripted.answers = [cut, cut]
    with pytest.raises(LLMError) as info:
        ask_structured("critic", settings(max_retries=1), Verdict, MESSAGES)
    assert info.value.kind == "truncated"
    assert "shorter" in str(scripted.prompts[1][-1].content)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (openai.APIConnectionError(request=request()), "unreachable"),
        (http.ConnectError("refused"), "unreachable"),
        (openai.APITimeoutError(request=request()), "timeout"),
        (status_error(openai.RateLimitError, 429), "rate_limit"),
        (status_error(openai.AuthenticationError, 401), "auth"),
        (status_error(openai.InternalServerError, 500), "server"),
        (status_error(openai.BadRequestError, 400), "server"),
        (ContextOverflowError("the prompt exceeds the context window"), "truncated"),
        (RuntimeError("boom"), "server"),
    ],
)
def test_error_kinds(scripted: ScriptedChatModel, error: BaseException, kind: str) -> None:
    scripted.answers = [error]
    with pytest.raises(LLMError) as info:
        ask_structured("critic", settings(max_retries=0), Verdict, MESSAGES)
    assert info.value.kind == kind
    assert type(info.value) is LLMError


def test_error_from_the_client_is_not_asked_again(scripted: ScriptedChatModel) -> None:
    # A chat model raises a transient error only once its own retries are spent.
    scripted.answers = [status_error(openai.InternalServerError, 503), VERDICT_JSON]
    with pytest.raises(LLMError) as info:
        ask_structured("critic", settings(max_retries=3), Verdict, MESSAGES)
    assert info.value.kind == "server" and info.value.retryable
    assert info.value.usage is not None and info.value.usage["calls"] == 1
    assert scripted.remaining == 1


def test_clients_are_built_with_the_settings_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9")
    opts = LLMSettings(max_retries=5)
    remote = cast(ChatOpenAI, OpenAIBackend().chat_model("http://127.0.0.1:9/v1#m", opts))
    local = cast(ChatOpenAI, LocalBackend().chat_model("smollm2", opts))
    assert remote.max_retries == local.max_retries == 5
    assert remote.root_client.max_retries == local.root_client.max_retries == 5


def test_client_retries_honour_retry_after_then_answer(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(429, "slow down", {"Retry-After": "1"}), Reply(503, "busy"), Reply()]
    result = ask_structured("critic", endpoint.settings(max_retries=2), Verdict, MESSAGES)
    assert result.value.route == "coder"
    assert [s.headers.get("x-stainless-retry-count") for s in endpoint.seen] == ["0", "1", "2"]
    # The client's own first backoff is at most 0.5 s: a longer pause is the server's.
    assert endpoint.seen[1].at - endpoint.seen[0].at >= 0.95
    assert result.usage["calls"] == 1
    assert (result.usage["input_tokens"], result.usage["output_tokens"]) == (11, 7)


@pytest.mark.parametrize(
    ("reply", "kind", "requests"),
    [
        (Reply(503, "busy", {"retry-after-ms": "10"}), "server", 3),
        (Reply(429, "slow down", {"retry-after-ms": "10"}), "rate_limit", 3),
        (Reply(200, delay=2.0), "timeout", 3),
        (Reply(401, "bad key"), "auth", 1),
        (Reply(400, "bad request"), "server", 1),
    ],
    ids=["server", "rate_limit", "timeout", "auth", "bad_request"],
)
def test_transient_errors_surface_after_the_client_retries(
    endpoint: Endpoint, reply: Reply, kind: str, requests: int
) -> None:
    endpoint.replies = [reply] * 3 + [Reply()]
    opts = endpoint.settings(max_retries=2, timeout=0.4 if reply.delay else 10)
    with pytest.raises(LLMError) as info:
        ask_structured("critic", opts, Verdict, MESSAGES)
    assert info.value.kind == kind
    assert len(endpoint.seen) == requests
    assert info.value.usage is not None and info.value.usage["calls"] == 1


def test_no_client_retries_when_max_retries_is_zero(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(503, "busy"), Reply()]
    with pytest.raises(LLMError) as info:
        ask_structured("critic", endpoint.settings(max_retries=0), Verdict, MESSAGES)
    assert info.value.kind == "server" and len(endpoint.seen) == 1


def test_rejected_answer_over_http_is_asked_again(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(text="no json here"), Reply(503, "busy"), Reply()]
    result = ask_structured("critic", endpoint.settings(max_retries=1), Verdict, MESSAGES)
    assert result.value.route == "coder"
    # The second question is a new call of ours; its 503 is retried inside the client.
    assert [s.headers.get("x-stainless-retry-count") for s in endpoint.seen] == ["0", "0", "1"]
    again = endpoint.seen[1].body["messages"]
    assert again[-2] == {"role": "assistant", "content": "no json here"}
    assert "rejected" in again[-1]["content"] and again[-1]["role"] == "user"
    assert result.usage["calls"] == 2
    assert (result.usage["input_tokens"], result.usage["output_tokens"]) == (22, 14)


def test_bad_key_is_not_retried(scripted: ScriptedChatModel) -> None:
    scripted.answers = [status_error(openai.AuthenticationError, 401), VERDICT_JSON]
    with pytest.raises(LLMError) as info:
        ask_structured("critic", settings(max_retries=3), Verdict, MESSAGES)
    assert info.value.kind == "auth"
    assert scripted.remaining == 1


def test_unknown_backend_is_an_llm_error() -> None:
    with pytest.raises(LLMError) as info:
        ask_structured("critic", LLMSettings(model="nosuch:model"), Verdict, MESSAGES)
    assert info.value.kind == "unreachable"
    assert "nosuch" in info.value.message


def test_openai_backend_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMError) as info:
        ask_structured("critic", LLMSettings(model="openai:gpt-x"), Verdict, MESSAGES)
    assert info.value.kind == "auth"


# --------------------------------------------------------------------------- cache, usage


def test_cache_replays_exactly(scripted: ScriptedChatModel, tmp_path: Path) -> None:
    scripted.answers = [VERDICT_JSON, '{"route": "end"}']
    cached_settings = settings(cache_dir=str(tmp_path))
    first = ask_structured("critic", cached_settings, Verdict, MESSAGES)
    second = ask_structured("critic", cached_settings, Verdict, MESSAGES)
    assert not first.cached and second.cached
    assert second.raw == first.raw and second.value == first.value
    assert len(scripted.prompts) == 1
    assert second.usage["calls"] == 0 and second.usage["cached_calls"] == 1
    assert second.usage["input_tokens"] == second.usage["output_tokens"] == 0
    other = ask_structured("critic", cached_settings, Verdict, [HumanMessage(content="other")])
    assert not other.cached and other.value.route == "end"
    files = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 2 and not any(name.startswith(".tmp") for name in files)


def test_usage_sums_every_attempt(scripted: ScriptedChatModel) -> None:
    scripted.answers = ["x" * 40, VERDICT_JSON]
    result = ask_structured("critic", settings(), Verdict, MESSAGES)
    prompt_tokens = len("judgetask") // 4 or 1
    assert result.usage["calls"] == 2
    assert result.usage["output_tokens"] == 10 + len(VERDICT_JSON) // 4
    assert result.usage["input_tokens"] > 2 * prompt_tokens - 1
    assert result.usage["seconds"] >= 0.0


# --------------------------------------------------------------------------- code


def test_clean_code_answer_accepts_and_rejects() -> None:
    code = clean_code_answer("Here it is:\n```python\ndef run(api):\n    return True\n```")
    assert code == "def run(api):\n    return True\n"
    with pytest.raises(ValueError, match="syntax error"):
        clean_code_answer("def run(api):\nreturn True")
    with pytest.raises(ValueError, match="def run"):
        clean_code_answer("def go(api):\n    return True\n")


def test_ask_code_with_grammar(grammar_scripted: ScriptedChatModel) -> None:
    program = 'def run(api):\n    api.go_to("tree")\n    api.do()\n    return True\n'
    grammar_scripted.answers = [program]
    result = ask_code(
        "coder", LLMSettings(model="scripted_g:x"), MESSAGES, grammar=code_grammar(SPECS, VOCAB)
    )
    assert isinstance(result.value, CodeActionAnswer) and result.value.code == program
    grammar = grammar_scripted.call_kwargs[0]["grammar"]
    assert grammar == code_grammar(SPECS, VOCAB)
    assert gbnf_accepts(grammar, program)


def test_ask_code_as_json_retries_a_syntax_error(scripted: ScriptedChatModel) -> None:
    bad = json.dumps({"code": "def run(api)\n    return True"})
    good = json.dumps({"code": "def run(api):\n    return api.do()", "explanation": "one"})
    scripted.answers = [bad, good]
    result = ask_code("coder", settings(), MESSAGES, grammar=code_grammar(SPECS, VOCAB))
    assert result.value.code == "def run(api):\n    return api.do()\n"
    assert result.value.explanation == "one"
    assert "syntax error" in str(scripted.prompts[1][-1].content)
    assert scripted.call_kwargs[0] == {"schema_name": "CodeActionAnswer"}


# --------------------------------------------------------------------------- grammar

ADMITTED = [
    "def run(api):\n    api.do()\n    return True\n",
    'def run(api):\n    api.go_to("tree", 30)\n    return False\n',
    (
        "def run(api):\n"
        '    while api.count("wood") < 3:\n'
        '        if not api.go_to("tree"):\n'
        "            return False\n"
        "        api.do()\n"
        "    return True\n"
    ),
    (
        "def run(api):\n"
        '    if api.sees("water") and api.count("sapling") >= 1:\n'
        '        api.place("table")\n'
        "    else:\n"
        "        api.explore(20)\n"
        "    for _ in range(5):\n"
        "        api.do()\n"
        "    return True\n"
    ),
]

REJECTED = [
    "import os\ndef run(api):\n    return True\n",
    'def run(api):\n    api.go_to("lava")\n    return True\n',
    'def run(api):\n    api.place("wood")\n    return True\n',
    "def run(api):\n    print(1)\n    return True\n",
    "def run(api):\n    x = 1\n    return True\n",
    "def run(api):\n    api._env.step(0)\n    return True\n",
    "def run(api):\n    return True\n",  # no statement before the return
    "def run(api):\n    api.do()\n",  # no final return
    'def run(api):\n    api.count("wood")\n    return True\n',  # perception as a statement
    # A loop that can only exit does nothing.
    'def run(api):\n    while api.count("wood") < 3:\n        return False\n    return True\n',
]


def test_grammar_is_well_formed() -> None:
    grammar = code_grammar(SPECS, VOCAB)
    rules = parse_gbnf(grammar)
    assert grammar.startswith("root ::= ")
    for line in grammar.strip().splitlines():
        assert re.fullmatch(r"[a-z0-9-]+ ::= .+", line), line
    referenced = set(
        re.findall(r"(?<![\"\[\w-])([a-z][a-z0-9-]*)(?![\"\w-])", _strip_literals(grammar))
    )
    assert referenced <= set(rules), referenced - set(rules)


@pytest.mark.parametrize("program", ADMITTED)
def test_grammar_admits_skill_programs(program: str) -> None:
    assert gbnf_accepts(code_grammar(SPECS, VOCAB), program)
    compile(program, "<test>", "exec")


@pytest.mark.parametrize("program", REJECTED)
def test_grammar_rejects_other_code(program: str) -> None:
    assert not gbnf_accepts(code_grammar(SPECS, VOCAB), program)


def test_grammar_bounds_nesting_and_length() -> None:
    limits = CodeGrammarLimits(max_statements=2, max_block=1, max_depth=1)
    grammar = code_grammar(SPECS, VOCAB, limits)
    nested = (
        "def run(api):\n"
        "    for _ in range(2):\n"
        "        for _ in range(2):\n"
        "            api.do()\n"
        "    return True\n"
    )
    assert not gbnf_accepts(grammar, nested)
    assert not gbnf_accepts(grammar, "def run(api):\n" + "    api.do()\n" * 3 + "    return True\n")
    assert gbnf_accepts(grammar, "def run(api):\n" + "    api.do()\n" * 2 + "    return True\n")


def test_grammar_needs_a_skill() -> None:
    with pytest.raises(ValueError, match="at least one skill"):
        code_grammar([], VOCAB)


# --------------------------------------------------------------------------- schemas


def test_strict_and_bounded_schemas() -> None:
    strict = strict_json_schema(Plan.model_json_schema())
    sub = strict["$defs"]["SubAction"]
    assert sub["additionalProperties"] is False and set(sub["required"]) == set(sub["properties"])
    assert "default" not in json.dumps(strict)
    bounded = bounded_json_schema(Plan.model_json_schema(), 100, 20, 3)
    sub_props = bounded["$defs"]["SubAction"]["properties"]
    assert sub_props["description"]["maxLength"] == 100
    assert sub_props["id"]["maxLength"] == 20
    assert "maxLength" not in sub_props["method"]
    # Bounds the schema sets itself are kept; the defaults fill in elsewhere.
    assert bounded["properties"]["sub_actions"]["maxItems"] == MAX_PLAN_STEPS
    # One answer adds at most MAX_STEPS (a curriculum's plan grows to MAX_PLAN_STEPS).
    assert planner_schema({"items": ["wood"]})["properties"]["sub_actions"]["maxItems"] == 8
    assert bounded["properties"]["rationale"]["maxLength"] == 400
    setup = bounded_json_schema(RLSetup.model_json_schema(), 100, 20, 3)
    assert setup["properties"]["code_actions"]["maxItems"] == 3


def test_restrict_schema_limits_names(scripted: ScriptedChatModel) -> None:
    schema = restrict_schema(
        RLSetup, {"RLSetup.code_actions": ["find_tree"], "ShapingTerm.item": ["wood"]}
    )
    assert schema["properties"]["code_actions"]["items"]["enum"] == ["find_tree"]
    assert schema["$defs"]["ShapingTerm"]["properties"]["item"]["enum"] == ["wood"]
    free = restrict_schema(Plan, {"Predicate.name": []})
    assert "enum" not in free["$defs"]["Predicate"]["properties"]["name"]
    with pytest.raises(KeyError, match=r"Plan\.nothing"):
        restrict_schema(Plan, {"Plan.nothing": ["x"]})
    scripted.answers = ['{"code_actions": ["find_tree"]}']
    result = ask_structured("coder", settings(), RLSetup, MESSAGES, json_schema=schema)
    assert result.value.code_actions == ["find_tree"]


def test_role_schemas_limit_names() -> None:
    vocab = {"achievements": ["collect_wood"], "items": ["wood"], "targets": ["tree"]}
    plan = planner_schema(vocab)
    assert plan["$defs"]["Predicate"]["properties"]["name"]["enum"] == ["collect_wood", "wood"]
    setup = rl_setup_schema(["find_tree"], [])
    assert setup["properties"]["code_actions"]["items"]["enum"] == ["find_tree"]
    assert "enum" not in setup["$defs"]["ShapingTerm"]["properties"]["item"]
    verdict = verdict_schema(["get_wood"])
    assert verdict["properties"]["subaction_ids"]["items"]["enum"] == ["get_wood"]


def test_int_choices_become_literals() -> None:
    spec = SkillSpec(
        "wait", (SkillParam("n", "int", choices=("1", "5")),), "None", "", "navigation", True
    )
    grammar = code_grammar([spec], {})
    assert gbnf_accepts(grammar, "def run(api):\n    api.wait(5)\n    return True\n")
    assert not gbnf_accepts(grammar, "def run(api):\n    api.wait(2)\n    return True\n")


def test_openai_backend_request_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = OpenAIBackend()
    opts = LLMSettings(model="openai:gpt-x", max_tokens=50)
    hosted = backend.structured_kwargs("gpt-x", "Verdict", Verdict.model_json_schema(), opts)
    fmt = hosted["extra_body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    url = backend.structured_kwargs(
        "http://127.0.0.1:1/v1#m", "Verdict", Verdict.model_json_schema(), opts
    )
    assert url["extra_body"]["max_tokens"] == 50
    assert "strict" not in url["extra_body"]["response_format"]["json_schema"]
    monkeypatch.delenv("RLGPT_API_KEY", raising=False)
    chat = backend.chat_model("http://127.0.0.1:1/v1#m", opts)
    assert chat.model_name == "m"  # type: ignore[attr-defined]


def test_reuse_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:8123")
    assert shared_base_url() == "http://127.0.0.1:8123/v1"


# --------------------------------------------------------------------------- prompts


def test_prompt_examples_are_valid_answers() -> None:
    Plan.model_validate(prompt_module.PLANNER_EXAMPLE_ANSWER)
    RLSetup.model_validate(prompt_module.CODER_RL_EXAMPLE_ANSWER)
    Verdict.model_validate(prompt_module.CRITIC_EXAMPLE_ANSWER)
    clean_code_answer(prompt_module.CODER_CODE_EXAMPLE_ANSWER)
    # The few-shot code is what the grammar lets the local model write (in the example game).
    things = ("reeds", "clay", "bench")
    items = ("reed", "clay", "spade")
    kitchen = [
        SkillSpec("count", (SkillParam("item", "str", items),), "int", "", "perception"),
        SkillSpec("has", (SkillParam("item", "str", items),), "bool", "", "perception"),
        SkillSpec("seen", (SkillParam("name", "str", things),), "bool", "", "perception"),
        SkillSpec("move_to", (SkillParam("name", "str", things),), "bool", "", "navigation", True),
        SkillSpec(
            "explore", (SkillParam("steps", "int", default=20),), "bool", "", "navigation", True
        ),
        SkillSpec("do", (), "bool", "", "interaction", True),
        SkillSpec(
            "make", (SkillParam("item", "str", ("spade",)),), "bool", "", "interaction", True
        ),
        SkillSpec(
            "place", (SkillParam("item", "str", ("bench",)),), "bool", "", "interaction", True
        ),
    ]
    grammar = code_grammar(kitchen, {"items": list(items), "names": list(things)})
    for answer in (
        prompt_module.CODER_CODE_EXAMPLE_ANSWER,
        prompt_module.CODER_CODE_EXAMPLE_ANSWER_2,
        prompt_module.CODER_CODE_EXAMPLE_ANSWER_3,
    ):
        clean_code_answer(answer)
        assert gbnf_accepts(grammar, answer), answer


def test_skills_doc_lists_every_skill() -> None:
    doc = skills_doc(SPECS)
    assert 'api.place(item: "stone"|"table") -> bool' in doc
    assert "api.go_to(target: str, max_steps: int = 50) -> bool" in doc
    assert len(doc.splitlines()) == len(SPECS) + 1
    names = tuple(f"thing{i}" for i in range(10))
    long_specs = [
        SkillSpec("seen", (SkillParam("name", "str", choices=names),), "bool", "", "perception"),
        SkillSpec("face", (SkillParam("name", "str", choices=names),), "bool", "", "navigation"),
        SkillSpec(
            "give", (SkillParam("name", "str", choices=names[:8]),), "bool", "", "navigation"
        ),
    ]
    doc = skills_doc(long_specs)
    assert "api.seen(name: <name>)" in doc and "api.face(name: <name>)" in doc
    assert "api.give(name: <name2>)" in doc
    assert doc.count('"thing9"') == 1 and "<name2> = " in doc


def test_prompts_carry_inputs_and_stay_short() -> None:
    manual = "rule. " * 2000
    plan = planner_messages("t:x", "do x", manual, skills_doc(SPECS), "too slow", {"a": 1})
    assert isinstance(plan[0], SystemMessage) and isinstance(plan[-1], HumanMessage)
    assert "Task: x: do x" in str(plan[-1].content) and "too slow" in str(plan[-1].content)
    manual_excerpt = "- place_x: place x (uses 2 y)\n- collect_y: face y and do\n- other: z"
    about = planner_messages("t:place_x", "d", manual_excerpt, "", None, None)
    assert str(about[-1].content).endswith("Manual lines about it:\n- place_x: place x (uses 2 y)")
    assert sum(len(str(m.content)) for m in plan) < 9000
    step = {
        "id": "get_wood",
        "description": "get wood",
        "predicate": {"kind": "inventory", "name": "wood", "at_least": 2},
    }
    code = coder_code_messages(step, manual, skills_doc(SPECS), "crashed", "def run(api): ...")
    assert "inventory wood >= 2" in str(code[-1].content) and "crashed" in str(code[-1].content)
    rl = coder_rl_messages(step, ["get_wood", "find_tree"], None)
    assert "get_wood, find_tree" in str(rl[-1].content)
    evaluation = {"task_success_rate": 0.25, "episodes": 4, "subaction_success": {"get_wood": 0.5}}
    critic = critic_messages(
        "t:x", {"sub_actions": [step]}, evaluation, [{"node": "coder", "kind": "x", "message": "m"}]
    )
    assert "0.25" in str(critic[-1].content) and "get_wood 0.50" in str(critic[-1].content)


def test_scripted_model_string_routes_to_the_registered_backend(
    scripted: ScriptedChatModel,
) -> None:
    context = Context(planner_model="scripted:any")
    plan = json.dumps(prompt_module.PLANNER_EXAMPLE_ANSWER)
    scripted.answers = [lambda messages: plan]
    started = time.monotonic()
    result = ask_structured(
        "planner",
        context.llm_settings("planner"),
        Plan,
        planner_messages("t", "d", "m", "s", None, None),
    )
    assert result.value.sub_actions[0].id == "collect_reeds"
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- a tiny GBNF matcher
# Enough of GBNF for the grammars above: literals, [classes], rule references, groups,
# alternation and the postfix operators ? * + {m,n}. It backtracks; programs are short.

Node = tuple[Any, ...]


def _strip_literals(grammar: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]', " ", grammar)


def parse_gbnf(grammar: str) -> dict[str, Node]:
    rules: dict[str, Node] = {}
    for line in grammar.strip().splitlines():
        name, _, body = line.partition(" ::= ")
        node, pos = _parse_alt(body, 0)
        if body[pos:].strip():
            raise ValueError(f"trailing text in rule {name}: {body[pos:]!r}")
        rules[name.strip()] = node
    return rules


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


def _parse_alt(text: str, pos: int) -> tuple[Node, int]:
    options = []
    while True:
        seq, pos = _parse_seq(text, pos)
        options.append(seq)
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == "|":
            pos += 1
            continue
        return ("alt", options), pos


def _unescape(ch: str) -> str:
    return {"n": "\n", "t": "\t"}.get(ch, ch)


def _parse_seq(text: str, pos: int) -> tuple[Node, int]:
    items: list[Node] = []
    while True:
        pos = _skip(text, pos)
        if pos >= len(text) or text[pos] in "|)":
            return ("seq", items), pos
        char = text[pos]
        if char == '"':
            out, pos = [], pos + 1
            while text[pos] != '"':
                if text[pos] == "\\":
                    out.append(_unescape(text[pos + 1]))
                    pos += 2
                else:
                    out.append(text[pos])
                    pos += 1
            item: Node = ("lit", "".join(out))
            pos += 1
        elif char == "[":
            pos += 1
            ranges = []
            while text[pos] != "]":
                low = text[pos]
                if low == "\\":
                    low, pos = _unescape(text[pos + 1]), pos + 1
                if text[pos + 1] == "-" and text[pos + 2] != "]":
                    ranges.append((low, text[pos + 2]))
                    pos += 3
                else:
                    ranges.append((low, low))
                    pos += 1
            item, pos = ("cls", tuple(ranges)), pos + 1
        elif char == "(":
            item, pos = _parse_alt(text, pos + 1)
            pos = _skip(text, pos)
            if text[pos] != ")":
                raise ValueError("unbalanced parenthesis")
            pos += 1
        else:
            match = re.compile(r"[a-zA-Z0-9-]+").match(text, pos)
            if not match:
                raise ValueError(f"unexpected {text[pos : pos + 10]!r}")
            item, pos = ("ref", match.group()), match.end()
        if pos < len(text) and text[pos] in "?*+":
            bounds = {"?": (0, 1), "*": (0, None), "+": (1, None)}[text[pos]]
            item, pos = ("rep", item, *bounds), pos + 1
        elif pos < len(text) and text[pos] == "{":
            end = text.index("}", pos)
            low, _, high = text[pos + 1 : end].partition(",")
            upper = int(high) if high.strip() else (None if _ else int(low))
            item, pos = ("rep", item, int(low), upper), end + 1
        items.append(item)


def _match(rules: dict[str, Node], node: Node, text: str, pos: int) -> Iterator[int]:
    kind = node[0]
    if kind == "lit":
        if text.startswith(node[1], pos):
            yield pos + len(node[1])
    elif kind == "cls":
        if pos < len(text) and any(lo <= text[pos] <= hi for lo, hi in node[1]):
            yield pos + 1
    elif kind == "ref":
        yield from _match(rules, rules[node[1]], text, pos)
    elif kind == "alt":
        for option in node[1]:
            yield from _match(rules, option, text, pos)
    elif kind == "seq":
        yield from _match_seq(rules, node[1], text, pos)
    elif kind == "rep":
        yield from _match_rep(rules, node[1], node[2], node[3], text, pos, 0)


def _match_seq(rules: dict[str, Node], items: list[Node], text: str, pos: int) -> Iterator[int]:
    if not items:
        yield pos
        return
    for middle in _match(rules, items[0], text, pos):
        yield from _match_seq(rules, items[1:], text, middle)


def _match_rep(
    rules: dict[str, Node], item: Node, low: int, high: int | None, text: str, pos: int, n: int
) -> Iterator[int]:
    if n >= low:
        yield pos
    if high is None or n < high:
        for nxt in _match(rules, item, text, pos):
            if nxt > pos:
                yield from _match_rep(rules, item, low, high, text, nxt, n + 1)


def gbnf_accepts(grammar: str, text: str) -> bool:
    rules = parse_gbnf(grammar)
    return any(end == len(text) for end in _match(rules, rules["root"], text, 0))
