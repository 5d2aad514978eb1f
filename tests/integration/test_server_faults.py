"""The graph server under faults: concurrent runs on PostgreSQL, a PostgreSQL restart during
a run, and the server itself killed and started again; every thread continues."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client

from rlgpt.llm.local_server import URL_ENV
from rlgpt.server_checkpointer import URL_ENV as PG_URL_ENV
from tests.integration.postgres import PostgresCluster, PostgresUnavailable, running_postgres
from tests.integration.servers import GRAPH, graph_server
from tests.integration.test_server import SMALL, prepare_thread, state_of

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _finish(client: Any, thread_id: str, context: dict[str, Any]) -> dict[str, Any]:
    """Run the thread to its end (again after a failed run); its final state's values."""
    for _ in range(3):
        client.runs.wait(thread_id, GRAPH, input=None, context=context)
        state = state_of(client, thread_id)
        if not state["next"]:
            return dict(state["values"])
    raise AssertionError(f"thread {thread_id} did not finish: next {state['next']}")


def test_server_threads_survive_postgres_restart_and_server_kill(
    local_server: Any, tmp_path: Path
) -> None:
    """Four runs at once on PostgreSQL; PostgreSQL restarted mid-run and the server killed:
    every thread finishes, read back from PostgreSQL by a new server."""
    try:
        with running_postgres() as cluster:
            _exercise(cluster, tmp_path)
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed for these tests: {exc}")


def _exercise(cluster: PostgresCluster, tmp_path: Path) -> None:
    env = {URL_ENV: os.environ[URL_ENV], PG_URL_ENV: cluster.url}
    context = {**SMALL, "runs_dir": str(tmp_path / "runs")}
    with graph_server(tmp_path / "first", env, checkpointer=True) as running:
        client = get_sync_client(url=running.url, timeout=300)
        # 1. Four runs at once, each on its own thread.
        threads = [prepare_thread(client, GRAPH, context) for _ in range(4)]
        runs = [client.runs.create(t, GRAPH, input=None, context=context) for t in threads]
        for thread_id, run in zip(threads, runs, strict=True):
            client.runs.join(thread_id, str(run["run_id"]))
            values = state_of(client, thread_id)["values"]
            assert len(values["rl_runs"]) == 1 and values["evaluations"], thread_id
        # 2. PostgreSQL restarts while a longer run trains; the thread still finishes.
        long_context = {**context, "rl_timesteps": 20_000}
        restarted = prepare_thread(client, GRAPH, long_context)
        client.runs.create(restarted, GRAPH, input=None, context=long_context)
        time.sleep(5)
        cluster.restart()
        values = _finish(client, restarted, long_context)
        assert values["rl_runs"] and values["evaluations"]
        # A thread prepared before the server dies, run after it is back.
        waiting = prepare_thread(client, GRAPH, context)
        # 3. The server is killed outright (no clean shutdown).
        os.killpg(running.process.pid, signal.SIGKILL)
        running.process.wait(timeout=30)
    with graph_server(tmp_path / "second", env, checkpointer=True) as again:
        client = get_sync_client(url=again.url, timeout=300)
        for thread_id in [*threads, restarted, waiting]:
            # `langgraph dev` keeps its thread table in memory, lost with a killed server; the
            # checkpoints are in PostgreSQL, and a thread created again with its id and graph
            # reads them.
            client.threads.create(
                thread_id=thread_id, if_exists="do_nothing", metadata={"graph_id": GRAPH}
            )
        for thread_id in [*threads, restarted]:
            # Every finished thread reads back whole from PostgreSQL.
            values = state_of(client, thread_id)["values"]
            assert values["rl_runs"] and values["evaluations"], thread_id
        values = _finish(client, waiting, context)
        assert values["rl_runs"] and values["evaluations"]
