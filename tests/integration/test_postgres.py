"""CLI checkpointers: SQLite by default, PostgreSQL (a private cluster on 127.0.0.1) by URL."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig

from rlgpt.checkpoint import CheckpointerUnavailable, open_checkpointer
from rlgpt.graph.builder import builder
from rlgpt.graph.context import Context
from rlgpt.server_checkpointer import URL_ENV, ServerCheckpointerSettings
from tests.helpers import coder_output, rl_plan
from tests.integration.postgres import free_port

TASK = "crafter:collect_wood"
PLAN = rl_plan()


def _start_and_plan(target: str, runs_dir: Path, thread_id: str) -> dict[str, Any]:
    """Run `start`, then enter a plan as the coder's output; return the config of that step."""
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    with open_checkpointer(target) as saver:
        graph = builder.compile(checkpointer=saver)
        graph.invoke(
            {"task": TASK},
            config,
            context=Context(runs_dir=str(runs_dir)),
            interrupt_before=["planner"],
        )
        assert graph.get_state(config).next == ("planner",)
        graph.update_state(config, coder_output(PLAN), as_node="coder")
        return dict(graph.get_state(config).config)


def _reopened_state(target: str, thread_id: str) -> tuple[Any, int]:
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    with open_checkpointer(target) as saver:
        graph = builder.compile(checkpointer=saver)
        return graph.get_state(config), len(list(graph.get_state_history(config)))


@pytest.mark.integration
def test_sqlite_is_the_default_and_survives_a_reopen(tmp_path: Path) -> None:
    target = str(tmp_path / "nested" / "checkpoints.sqlite")
    _start_and_plan(target, tmp_path / "runs", "sqlite-1")
    state, steps = _reopened_state(target, "sqlite-1")
    assert Path(target).exists()
    assert state.next == ("rl_trainer",)
    assert state.values["todo"] == ["get_wood"] and steps >= 4


@pytest.mark.integration
def test_postgres_saver_keeps_runs_and_forks_them(postgres_url: str, tmp_path: Path) -> None:
    planned = _start_and_plan(postgres_url, tmp_path / "runs", "pg-1")
    # A new connection (as after a restart) sees the run where it stopped.
    state, steps = _reopened_state(postgres_url, "pg-1")
    assert state.next == ("rl_trainer",)
    assert state.values["plan"]["sub_actions"][0]["id"] == "get_wood"
    assert Path(state.values["run_dir"]).is_dir() and steps >= 4
    # Time travel: a different plan entered at the same checkpoint makes a second branch.
    other = rl_plan("chop_tree")
    config: RunnableConfig = {"configurable": {"thread_id": "pg-1"}}
    with open_checkpointer(postgres_url) as saver:
        graph = builder.compile(checkpointer=saver)
        before = next(s for s in graph.get_state_history(config) if s.next == ("planner",))
        forked = graph.update_state(before.config, coder_output(other), as_node="coder")
        history = list(graph.get_state_history(config))
    branches = {
        s.values["plan"]["sub_actions"][0]["id"]
        for s in history
        if s.next == ("rl_trainer",) and s.values.get("plan")
    }
    assert branches == {"get_wood", "chop_tree"}
    fork_id = forked["configurable"]["checkpoint_id"]
    assert fork_id != planned["configurable"]["checkpoint_id"]
    assert history[0].config["configurable"]["checkpoint_id"] == fork_id


@pytest.mark.integration
def test_unreachable_postgres_is_a_clear_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none?connect_timeout=3"
    with (
        pytest.raises(CheckpointerUnavailable, match="cannot connect to postgresql://"),
        open_checkpointer(url),
    ):
        pass


def test_missing_postgres_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "langgraph.checkpoint.postgres", None)
    with (
        pytest.raises(CheckpointerUnavailable, match=r"rlgpt\[postgres\]"),
        open_checkpointer("postgresql://postgres@127.0.0.1:1/none"),
    ):
        pass


def test_empty_target_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"), open_checkpointer("  "):
        pass


def test_server_settings_come_from_the_environment() -> None:
    assert ServerCheckpointerSettings.from_env({}).url == ""
    settings = ServerCheckpointerSettings.from_env(
        {URL_ENV: " postgresql://u@127.0.0.1:5/db ", "RLGPT_POSTGRES_POOL_SIZE": "3"}
    )
    assert settings.url == "postgresql://u@127.0.0.1:5/db" and settings.pool_size == 3
    with pytest.raises(ValueError, match="postgresql://"):
        ServerCheckpointerSettings.from_env({URL_ENV: "sqlite:///x.db"})
    with pytest.raises(ValueError, match="at least 1"):
        ServerCheckpointerSettings.from_env({URL_ENV: "", "RLGPT_POSTGRES_POOL_SIZE": "0"})
