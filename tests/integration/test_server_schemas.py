"""What a running `langgraph dev` server says about the graph: its input, output and context
schemas, and that it loads env plugins through their entry points."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from rlgpt.graph.builder import builder
from rlgpt.graph.context import Context
from tests.integration.servers import GRAPH, graph_server

pytestmark = pytest.mark.integration

OUTPUT_FIELDS = {
    "run_dir",
    "report_path",
    "plan",
    "evaluations",
    "curriculum",
    "final_policy",
    "verdicts",
    "errors",
    "usage",
    "env_steps",
}


def context_fields() -> dict[str, str]:
    """Every Context field and its description (Context as a pydantic model or a dataclass)."""
    model_fields = getattr(Context, "model_fields", None)
    if model_fields is not None:
        return {name: field.description or "" for name, field in model_fields.items()}
    return {f.name: f.metadata.get("description", "") for f in dataclasses.fields(Context)}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or the definition its `$ref` points to."""
    ref = node.get("$ref")
    if ref is None:
        return node
    name = ref.rsplit("/", 1)[-1]
    resolved: dict[str, Any] = schema["$defs"][name]
    return resolved


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncLangGraphClient]:
    """An SDK client of a graph server of this module (no model server: nothing is asked)."""
    with graph_server(tmp_path_factory.mktemp("schema-server"), {}) as running:
        print(f"langgraph dev answered after {running.start_seconds:.1f}s")
        yield get_sync_client(url=running.url, timeout=120)


@pytest.fixture(scope="module")
def schemas(client: SyncLangGraphClient) -> dict[str, Any]:
    """The graph's schemas as the server reports them for its default assistant."""
    (assistant,) = client.assistants.search(graph_id=GRAPH, limit=10)
    found: dict[str, Any] = dict(client.assistants.get_schemas(str(assistant["assistant_id"])))
    return found


def test_input_schema_asks_for_the_task(schemas: dict[str, Any]) -> None:
    schema = schemas["input_schema"]
    assert schema is not None
    assert schema["properties"]["task"]["type"] == "string"
    assert schema["required"] == ["task"]
    assert schema == builder.compile().get_input_jsonschema()


def test_output_schema_lists_what_a_finished_run_returns(schemas: dict[str, Any]) -> None:
    schema = schemas["output_schema"]
    assert schema is not None
    assert set(schema["properties"]) == OUTPUT_FIELDS
    assert schema["properties"]["report_path"]["type"] == "string"
    # The run's env-step ledger: steps per part of the loop.
    assert schema["properties"]["env_steps"]["type"] == "object"
    assert schema["properties"]["env_steps"]["additionalProperties"]["type"] == "integer"
    evaluation = _resolve(schema, schema["properties"]["evaluations"]["items"])
    assert {"task_success_rate", "subaction_success", "achievements", "score"} <= set(
        evaluation["properties"]
    )
    final = _resolve(schema, schema["properties"]["final_policy"])
    assert {"mode", "achievements", "score", "episode_results"} <= set(final["properties"])
    verdict = _resolve(schema, schema["properties"]["verdicts"]["items"])
    assert verdict["properties"]["route"]["enum"] == ["coder", "planner", "end"]
    error = _resolve(schema, schema["properties"]["errors"]["items"])
    assert set(error["required"]) == {"node", "kind", "message"}
    usage = _resolve(schema, schema["properties"]["usage"]["additionalProperties"])
    assert {"calls", "input_tokens", "output_tokens", "seconds"} <= set(usage["properties"])
    assert schema == builder.compile().get_output_jsonschema()


def test_context_schema_has_every_setting_with_its_description(schemas: dict[str, Any]) -> None:
    schema = schemas["context_schema"]
    assert schema is not None
    properties = schema["properties"]
    expected = context_fields()
    assert set(properties) == set(expected)
    for name, description in expected.items():
        assert description, f"Context.{name} has no description"
        assert properties[name].get("description") == description, name
    assert properties["env"]["default"] == "crafter"


def test_the_server_loads_the_test_plugin_through_its_entry_point(
    client: SyncLangGraphClient, tmp_path: Path
) -> None:
    thread = client.threads.create()
    thread_id = str(thread["thread_id"])
    context = {"env": "gridworld", "runs_dir": str(tmp_path / "runs")}
    client.runs.wait(
        thread_id,
        GRAPH,
        input={"task": "gridworld:open_door"},
        context=context,
        interrupt_before=["planner"],
    )
    state = client.threads.get_state(thread_id)
    assert state["next"] == ["planner"]
    spec = state["values"]["task_spec"]  # type: ignore[call-overload]
    assert (spec["env"], spec["name"]) == ("gridworld", "gridworld:open_door")
