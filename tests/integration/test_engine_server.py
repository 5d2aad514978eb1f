"""rlgpt's OpenAI-compatible endpoint in front of the embedded engine, with real models.

Most tests talk to the session's small model (`smollm2`); the last one runs the default
model (`qwen2.5-coder-1.5b`) through the project's planner and coder prompts.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from rlgpt.actions.grammar import code_grammar
from rlgpt.envs.base import load_adapter
from rlgpt.graph.schemas import Plan
from rlgpt.llm import LLMSettings, ask_code, ask_structured, engine_server
from rlgpt.llm.engine_server import EngineHTTPServer
from rlgpt.llm.local_server import URL_ENV, LocalServer, LocalServerConfig, free_port
from rlgpt.nodes.prompts import coder_code_messages, planner_messages, planner_schema, skills_doc

pytestmark = pytest.mark.integration

FAST = "smollm2"


class Pet(BaseModel):
    """The answer shape of the JSON tests; its JSON schema is what the endpoint enforces."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=20)
    legs: int = Field(ge=0, le=8)
    colour: Literal["black", "white", "ginger"]
    toys: list[Annotated[str, StringConstraints(max_length=12)]] = Field(max_length=3)


PET_SCHEMA = Pet.model_json_schema()
PET_PROMPT = [
    SystemMessage(content="You describe pets as JSON."),
    HumanMessage(content="Describe a ginger cat with two toys."),
]


def _chat(url: str, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=FAST,
        base_url=url,
        api_key=SecretStr("none"),
        temperature=0.0,
        max_retries=0,
        timeout=120,
        **kwargs,
    )


def _post(url: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    return httpx.post(f"{url}/chat/completions", content=content, headers=headers, timeout=120)


# --------------------------------------------------------------------------- constraints


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": {"name": "Pet", "schema": PET_SCHEMA}},
        {"type": "json_object", "schema": PET_SCHEMA},
    ],
    ids=["json_schema", "json_object"],
)
def test_response_format_answer_validates(
    local_server: LocalServer, response_format: dict[str, Any]
) -> None:
    chat = _chat(local_server.base_url, max_tokens=300)
    reply = chat.invoke(PET_PROMPT, response_format=response_format)
    assert reply.response_metadata["finish_reason"] == "stop"
    pet = Pet.model_validate_json(cast(str, reply.content))
    assert pet.colour in ("black", "white", "ginger") and len(pet.toys) <= 3


def test_gbnf_grammar_is_obeyed(local_server: LocalServer) -> None:
    grammar = (
        'root ::= "move " dir " " [1-9] (", then move " dir " " [1-9])?\n'
        'dir ::= "north" | "south" | "east" | "west"\n'
    )
    chat = _chat(local_server.base_url, max_tokens=40, extra_body={"grammar": grammar})
    # The request asks for something else entirely: only the grammar shapes the answer.
    reply = chat.invoke([HumanMessage(content="Write a haiku about the sea.")])
    text = cast(str, reply.content)
    assert re.fullmatch(
        r"move (north|south|east|west) [1-9](, then move (north|south|east|west) [1-9])?", text
    ), text
    assert reply.response_metadata["finish_reason"] == "stop"


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(
    ("prompt", "stop"),
    [
        ("Tell me a short story about a robot.", None),
        # Either stop string spans tokens ("\n" or "," before "5"): what may begin one is
        # held back from the stream until the next token shows whether it does.
        ("Count from 1 to 20, separated by commas.", ["\n5", ", 5"]),
    ],
    ids=["plain", "stop_string"],
)
def test_stream_joins_to_the_plain_answer(
    local_server: LocalServer, prompt: str, stop: list[str] | None
) -> None:
    chat = _chat(local_server.base_url, max_tokens=60, stop=stop)
    messages = [HumanMessage(content=prompt)]
    # Once evaluated, both answers below start from the same cached prompt state.
    chat.invoke(messages)
    plain = chat.invoke(messages)
    pieces = [cast(str, chunk.content) for chunk in chat.stream(messages)]
    assert len([p for p in pieces if p]) > 3  # streamed piece by piece, not all at once
    assert "".join(pieces) == plain.content
    if stop:
        assert plain.response_metadata["finish_reason"] == "stop"
        assert "4" in cast(str, plain.content) and "5" not in cast(str, plain.content)


# --------------------------------------------------------------------------- prefix cache


def test_repeated_system_prompt_is_read_from_the_cache() -> None:
    manual = load_adapter("crafter").manual()
    other = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(60))
    # A server of its own: its first request is truly cold.
    with LocalServer(LocalServerConfig(model=FAST)) as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)

        def cached_tokens(system: str, question: str) -> tuple[int, int]:
            reply = client.chat.completions.create(
                model=FAST,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ],
                max_tokens=8,
                temperature=0.0,
            )
            assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
            return reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens or 0

        cold_prompt, cold = cached_tokens(manual, "What gives wood?")
        assert cold_prompt > 300 and cold == 0
        warm_prompt, warm = cached_tokens(manual, "What does a table need?")
        # Everything up to the user's question comes from the cache.
        assert cold_prompt // 2 < warm < warm_prompt
        other_prompt, fresh = cached_tokens(other, "What is 7 squared?")
        # Another system prompt shares only the chat template's first tokens.
        assert other_prompt > 300 and fresh < 10


# --------------------------------------------------------------------------- bad requests


def test_bad_requests_get_400_and_the_server_keeps_serving(local_server: LocalServer) -> None:
    url = local_server.base_url
    n_ctx = local_server.config.n_ctx
    hello = [{"role": "user", "content": "Say hello."}]
    too_long = [{"role": "user", "content": "word " * (n_ctx + 100)}]  # a token per word
    bad: list[Any] = [
        {},
        {"messages": []},
        b"{not json",
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"messages": hello, "response_format": {"type": "json_object", "schema": {"type": 5}}},
        {"messages": hello, "response_format": {"type": "json_schema", "json_schema": "Pet"}},
        {"messages": too_long},
        {"messages": hello, "grammar": "root ::= undefined-rule"},
        {"messages": hello, "grammar": 'root ::= root "x" | "y"'},
        {"messages": hello, "grammar": "root ::= [b-a]"},
        {"messages": hello, "grammar": "root ::= <|im_end|>"},  # end of generation, required
        {"messages": hello, "grammar": "root ::= undefined-rule", "stream": True},
        {"messages": too_long, "stream": True},
    ]
    for body in bad:
        response = _post(url, body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert isinstance(error["message"], str) and error["message"]
    assert f"context window is {n_ctx}" in _post(url, bad[6]).json()["error"]["message"]
    assert local_server.running
    good = _post(url, {"messages": hello, "max_tokens": 5})
    assert good.status_code == 200
    assert good.json()["choices"][0]["message"]["role"] == "assistant"
    assert httpx.get(f"{url}/models", timeout=10).json()["data"][0]["id"] == FAST


# --------------------------------------------------------------------------- loopback


def _listeners(port: int) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.setdefault(table, []).append(address)
    return found


def test_listens_on_loopback_only(local_server: LocalServer) -> None:
    port = int(local_server.base_url.rsplit(":", 1)[1].split("/")[0])
    assert _listeners(port) == {"tcp": ["0100007F"]}  # 127.0.0.1, and no IPv6 socket


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_non_loopback_hosts_are_refused(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    with pytest.raises(ValueError, match="loopback"):
        EngineHTTPServer((host, port), cast(Any, None), "m")
    with pytest.raises(SystemExit) as exited:
        engine_server.main(["--model", "absent.gguf", "--port", str(port), "--host", host])
    assert exited.value.code == 2 and "loopback" in capsys.readouterr().err
    with pytest.raises(ValueError, match="loopback"):
        LocalServer(LocalServerConfig(model=FAST, host=host, port=port)).start()
    assert not _listeners(port)


# --------------------------------------------------------------------------- default model

CODER_STEP = {
    "id": "collect_wood",
    "description": "Collect one wood from a tree.",
    "predicate": {"kind": "inventory", "name": "wood", "at_least": 1},
    "method": "code",
    "reason": "Walk to a tree and collect it.",
}


def test_default_model_plans_and_codes_for_crafter(
    qwen_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, qwen_server.base_url)
    adapter = load_adapter("crafter")
    specs = adapter.skill_specs()
    vocabulary = adapter.vocabulary()
    task = adapter.task("crafter:make_wood_pickaxe")
    settings = LLMSettings(
        model="local:qwen2.5-coder-1.5b", max_tokens=600, max_retries=1, timeout=300
    )

    plan = ask_structured(
        "planner",
        settings,
        Plan,
        planner_messages(
            task.name, task.description, adapter.manual(), skills_doc(specs), None, None
        ),
        json_schema=planner_schema(vocabulary),
    )
    assert isinstance(plan.value, Plan) and 1 <= len(plan.value.sub_actions) <= 8
    known = {*vocabulary["achievements"], *vocabulary["items"]}
    assert {step.predicate.name for step in plan.value.sub_actions} <= known
    assert all(step.method in ("code", "rl") for step in plan.value.sub_actions)

    result = ask_code(
        "coder",
        settings,
        coder_code_messages(CODER_STEP, adapter.manual(), skills_doc(specs), None, None),
        grammar=code_grammar(specs, vocabulary),
    )
    code = result.value.code
    tree = ast.parse(code)
    compile(tree, "<code_action>", "exec")
    assert [(type(n), getattr(n, "name", "")) for n in tree.body] == [(ast.FunctionDef, "run")]
    assert [a.arg for a in cast(ast.FunctionDef, tree.body[0]).args.args] == ["api"]
    skill_names = {spec.name for spec in specs}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert any(isinstance(c.func, ast.Attribute) for c in calls), code
    for call in calls:
        func = call.func
        if isinstance(func, ast.Name):
            assert func.id == "range", code
            continue
        assert isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name), code
        assert func.value.id == "api" and func.attr in skill_names, code
    assert result.usage["input_tokens"] > 1000 and plan.usage["input_tokens"] > 1000
