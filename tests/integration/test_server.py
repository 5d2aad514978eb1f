"""The graph served by `langgraph dev` (started as `rlgpt serve` does), driven by langgraph-sdk."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from rlgpt.execution.ray_cluster import LOOPBACK_SWITCH
from rlgpt.llm.local_server import URL_ENV, free_port
from rlgpt.serve import serve_env
from tests.helpers import coder_output, listening_sockets, rl_plan
from tests.integration.conftest import RayCluster
from tests.integration.servers import (
    GRAPH,
    GraphServer,
    graph_server,
    serve_config,
    start_logged,
    stop_group,
    wait_answering,
)

pytestmark = pytest.mark.integration

TASK = "crafter:collect_wood"

# Tiny budgets: every Context field can be set per run or per assistant.
SMALL: dict[str, Any] = {
    "planner_model": "local:smollm2",
    "coder_model": "local:smollm2",
    "critic_model": "local:smollm2",
    "plan_revisions": 0,
    "code_repairs": 0,
    "rl_timesteps": 1024,
    "rl_n_steps": 128,
    "eval_episodes": 2,
    "code_check_episodes": 1,
    "subaction_max_steps": 100,
    "max_inner_loops": 0,
    "max_outer_loops": 0,
    "critic": "rules",
    "gif": False,
    "llm_max_retries": 0,
}

PLAN = rl_plan()


def listen_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a listening TCP socket on `port`."""
    return {address for address, p in listening_sockets() if p == port}


def test_rlgpt_serve_prints_the_studio_url_and_binds_loopback(tmp_path: Path) -> None:
    env = serve_env()
    assert env["LANGGRAPH_CLI_NO_ANALYTICS"] == "1"
    assert env["LANGGRAPH_NO_VERSION_CHECK"] == "true"
    assert env["LANGSMITH_TRACING"] == "false"
    config = serve_config(tmp_path / "serve")
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "rlgpt.cli", "serve", "--port", str(port)]
    process = start_logged([*command, "--config", str(config)], config.parent, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url, process, log_path, 120, "rlgpt serve")
        text = log_path.read_text()
        assert "Studio" in text and f"baseUrl={url}" in text
        # 0100007F is 127.0.0.1 in /proc/net/tcp; nothing listens on other interfaces.
        assert listen_addresses(port) == {"0100007F"}
    finally:
        stop_group(process)


@pytest.fixture(scope="module")
def server(local_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphServer]:
    """One graph server for the module, reusing the session's local model server."""
    directory = tmp_path_factory.mktemp("graph-server")
    # The switch keeps a Ray driver in the server on loopback, where the test cluster is.
    env = {URL_ENV: os.environ[URL_ENV], LOOPBACK_SWITCH: "0"}
    with graph_server(directory, env) as running:
        print(f"langgraph dev answered after {running.start_seconds:.1f}s")
        yield running
    assert running.process.poll() is not None


@pytest.fixture(scope="module")
def client(server: GraphServer) -> SyncLangGraphClient:
    """An SDK client of the module's server."""
    return get_sync_client(url=server.url, timeout=300)


@pytest.fixture()
def runs_dir(tmp_path: Path) -> str:
    """Where this test's runs write (outside the server's working directory)."""
    return str(tmp_path / "runs")


def state_of(
    client: SyncLangGraphClient, thread_id: str, checkpoint_id: str | None = None
) -> dict[str, Any]:
    """The thread's state (latest, or at a checkpoint) as a plain dict."""
    return cast(dict[str, Any], client.threads.get_state(thread_id, checkpoint_id=checkpoint_id))


def history_of(client: SyncLangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    """The thread's checkpoints, newest first."""
    return cast(list[dict[str, Any]], client.threads.get_history(thread_id, limit=100))


def prepare_thread(
    client: SyncLangGraphClient,
    assistant: str,
    context: dict[str, Any],
    plan: dict[str, Any] = PLAN,
) -> str:
    """A thread that ran `start`, with a plan and RL set-up entered as the coder's output.

    No model is asked: the next step is the RL trainer.
    """
    thread = client.threads.create()
    thread_id = str(thread["thread_id"])
    client.runs.wait(
        thread_id,
        assistant,
        input={"task": TASK},
        context=context,
        interrupt_before=["planner"],
    )
    client.threads.update_state(thread_id, coder_output(plan), as_node="coder")
    state = state_of(client, thread_id)
    assert state["next"] == ["rl_trainer"]
    return thread_id


def test_stream_a_run_and_read_state_and_history(
    server: GraphServer, client: SyncLangGraphClient, runs_dir: str
) -> None:
    context = {**SMALL, "runs_dir": runs_dir}
    thread_id = prepare_thread(client, GRAPH, context)
    counts: Counter[str] = Counter()
    nodes: list[str] = []
    progress: list[dict[str, Any]] = []
    started = time.monotonic()
    for part in client.runs.stream(
        thread_id,
        GRAPH,
        input=None,
        context=context,
        stream_mode=["values", "updates", "custom"],
    ):
        counts[part.event] += 1
        if part.event == "updates":
            nodes.extend(part.data)
        elif part.event == "custom" and part.data.get("event") == "rl_progress":
            progress.append(part.data)
        assert part.event != "error", part.data
    seconds = time.monotonic() - started
    assert nodes == ["rl_trainer", "critic", "report"]
    assert counts["values"] >= 3
    assert progress, "no rl_progress events on the custom stream"
    assert progress[-1]["final"] and progress[-1]["env_steps"] >= SMALL["rl_timesteps"]
    state = state_of(client, thread_id)
    values = state["values"]
    assert state["next"] == []
    assert values["rl_runs"][0]["subaction"] == "get_wood"
    policies = [a for a in values["library"].values() if a["kind"] == "policy"]
    assert [a["subaction"] for a in policies] == ["get_wood"]
    assert Path(values["report_path"]).exists()
    history = history_of(client, thread_id)
    steps = [tuple(h["next"]) for h in history]
    # Newest first: done, before report, before critic, before rl_trainer, ..., the input.
    assert steps[:4] == [(), ("report",), ("critic",), ("rl_trainer",)]
    assert steps[-1] == ("__start__",)
    print(
        f"server start {server.start_seconds:.1f}s; streamed run {seconds:.1f}s; "
        f"events {dict(counts)}; rl_progress {len(progress)}; history {len(history)}"
    )


def test_assistants_switch_plugin_and_model_on_two_threads_at_once(
    client: SyncLangGraphClient, runs_dir: str
) -> None:
    rules = client.assistants.create(
        GRAPH, context={**SMALL, "runs_dir": runs_dir, "critic": "rules"}, name="rules critic"
    )
    model = client.assistants.create(
        GRAPH,
        context={
            **SMALL,
            "runs_dir": runs_dir,
            "critic": "llm",
            "critic_model": "local:smollm2",
            "llm_max_tokens": 64,
            # With no loop left the rules' verdict stands and the model is not asked.
            "max_inner_loops": 1,
        },
        name="model critic",
    )
    threads = {
        name: prepare_thread(client, str(a["assistant_id"]), {})
        for name, a in (("rules", rules), ("model", model))
    }
    runs = {
        name: client.runs.create(threads[name], str(a["assistant_id"]), input=None)
        for name, a in (("rules", rules), ("model", model))
    }
    both_running = False
    seen: list[tuple[str, ...]] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = {
            n: client.runs.get(threads[n], str(r["run_id"]))["status"] for n, r in runs.items()
        }
        both_running = both_running or set(status.values()) == {"running"}
        if not seen or seen[-1] != tuple(status.values()):
            seen.append(tuple(status.values()))
        if all(s not in ("pending", "running") for s in status.values()):
            break
        time.sleep(0.3)
    assert status == {"rules": "success", "model": "success"}, status
    assert both_running, f"the two runs never ran at the same time: {seen}"
    rules_state = state_of(client, threads["rules"])["values"]
    model_state = state_of(client, threads["model"])["values"]
    assert rules_state["verdicts"][-1]["source"] in ("rules", "budget")
    assert "critic" not in rules_state.get("usage", {})
    # The model critic asked the real model whenever the task was not solved (whatever it
    # answered, its tokens are counted); a solved task ends by the rules without a call.
    first = model_state["evaluations"][0]
    if first["task_success_rate"] < 0.8:
        assert model_state["usage"]["critic"]["calls"] >= 1
        assert model_state["verdicts"][0]["source"] in ("llm", "rules (model failed)")
    else:
        assert model_state["verdicts"][0]["source"] == "rules"
        assert "critic" not in model_state["usage"]
    print(
        "verdict sources:",
        rules_state["verdicts"][-1]["source"],
        "|",
        model_state["verdicts"][-1]["source"],
        model_state["usage"]["critic"],
        [e["kind"] for e in model_state.get("errors", [])],
    )


def test_time_travel_forks_a_thread_with_an_edited_plan(
    client: SyncLangGraphClient, runs_dir: str
) -> None:
    context = {**SMALL, "runs_dir": runs_dir, "rl_timesteps": 256}
    thread_id = prepare_thread(client, GRAPH, context, rl_plan("get_wood", "Branch A."))
    client.runs.wait(thread_id, GRAPH, input=None, context=context)
    first = state_of(client, thread_id)
    assert first["values"]["plan"]["sub_actions"][0]["id"] == "get_wood"
    history = history_of(client, thread_id)
    before_training = next(h for h in history if h["next"] == ["rl_trainer"])
    fork_from = before_training["checkpoint"]["checkpoint_id"]
    # Branch B: a different plan entered at the same point, as if the coder had written it.
    edited = client.threads.update_state(
        thread_id,
        coder_output(rl_plan("chop_tree", "Branch B.")),
        as_node="coder",
        checkpoint_id=fork_from,
    )
    client.runs.wait(
        thread_id,
        GRAPH,
        input=None,
        context=context,
        checkpoint_id=edited["checkpoint"]["checkpoint_id"],
    )
    latest = state_of(client, thread_id)["values"]
    assert latest["plan"]["sub_actions"][0]["id"] == "chop_tree"
    assert [r["subaction"] for r in latest["rl_runs"]] == ["chop_tree"]
    # Branch A is still there, from its own checkpoint.
    old = state_of(client, thread_id, checkpoint_id=first["checkpoint"]["checkpoint_id"])
    assert [r["subaction"] for r in old["values"]["rl_runs"]] == ["get_wood"]
    history = history_of(client, thread_id)
    finished = {
        h["values"]["plan"]["sub_actions"][0]["id"]
        for h in history
        if h["next"] == [] and h["values"].get("report_path")
    }
    assert finished == {"get_wood", "chop_tree"}
    parents = {
        h["checkpoint"]["checkpoint_id"]: (h.get("parent_checkpoint") or {}).get("checkpoint_id")
        for h in history
    }
    assert parents[edited["checkpoint"]["checkpoint_id"]] == fork_from


def _curve(run_dir: str, step: str) -> Path | None:
    found = sorted((Path(run_dir) / "rl" / f"{step}_1").glob("*.curve.json"))
    return found[0] if found else None


def test_remote_training_streams_its_progress_through_the_server(
    server: GraphServer, client: SyncLangGraphClient, runs_dir: str, ray_cluster: RayCluster
) -> None:
    context = {**SMALL, "runs_dir": runs_dir, "executor": "ray", "ray_address": ray_cluster.address}
    thread_id = prepare_thread(client, GRAPH, context, rl_plan("remote_job", "Trained on Ray."))
    progress: list[dict[str, Any]] = []
    for part in client.runs.stream(
        thread_id, GRAPH, input=None, context=context, stream_mode=["custom"],
        interrupt_after=["rl_trainer"],
    ):  # fmt: skip
        if part.event == "custom" and part.data.get("event") in ("rl_progress", "job_started"):
            progress.append(part.data)
    # The job ran as a Ray task on one of the cluster's nodes, and said so as it went.
    nodes = {e["node"] for e in progress}
    assert len(nodes) == 1 and nodes <= {n["NodeID"] for n in ray_nodes()}
    finals = [e for e in progress if e.get("final")]
    assert len(finals) == 1 and finals[0]["job"] == "remote_job"
    assert finals[0]["env_steps"] == SMALL["rl_timesteps"]
    (run,) = state_of(client, thread_id)["values"]["rl_runs"]
    assert run["env_steps"] == SMALL["rl_timesteps"] and Path(run["policy_path"]).exists()


def ray_nodes() -> list[dict[str, Any]]:
    """The nodes of the Ray cluster this process joined."""
    import ray

    return list(ray.nodes())


@pytest.mark.faults
def test_cancel_mid_training_stops_the_worker(
    server: GraphServer, client: SyncLangGraphClient, runs_dir: str
) -> None:
    budget = 200_000
    context = {**SMALL, "runs_dir": runs_dir, "rl_timesteps": budget}
    thread_id = prepare_thread(client, GRAPH, context, rl_plan("long_job", "A long training job."))
    run_dir = state_of(client, thread_id)["values"]["run_dir"]
    run_id = ""
    first: dict[str, Any] = {}
    for part in client.runs.stream(
        thread_id,
        GRAPH,
        input=None,
        context=context,
        stream_mode=["custom"],
        on_disconnect="continue",
    ):
        if part.event == "metadata":
            run_id = part.data["run_id"]
        if part.event == "custom" and part.data.get("event") == "rl_progress":
            first = part.data
            break
    assert run_id and first and not first["final"]
    # The server keeps answering while a training step runs.
    started = time.monotonic()
    client.assistants.search(limit=1)
    latency = time.monotonic() - started
    assert latency < 5.0
    cancelled_at = time.monotonic()
    client.runs.cancel(thread_id, run_id, action="interrupt")
    assert client.runs.get(thread_id, run_id)["status"] == "interrupted"
    # A stopped trainer saves what it has and writes its curve; a runaway one would not
    # for minutes (the budget takes ~10 min here).
    curve = _curve(run_dir, "long_job")
    while curve is None and time.monotonic() - cancelled_at < 60:
        time.sleep(0.5)
        curve = _curve(run_dir, "long_job")
    assert curve is not None, "training did not stop after the run was cancelled"
    stopped_after = time.monotonic() - cancelled_at
    assert list(curve.parent.glob("*.zip")), "the stopped trainer saved no policy"
    data = json.loads(curve.read_text())
    episodes = data["episodes"] if isinstance(data, dict) else data
    last = max((int(e.get("total_env_steps", e.get("env_steps", 0))) for e in episodes), default=0)
    assert last < budget // 4
    # Nothing from the cancelled step reached the thread yet.
    state = state_of(client, thread_id)
    assert state["next"] == ["rl_trainer"] and not state["values"].get("rl_runs")
    record = curve.parent / "record.json"
    while not record.exists() and time.monotonic() - cancelled_at < 60:
        time.sleep(0.5)
    trained = json.loads(record.read_text())["env_steps"]
    # Resumed with a budget the cancelled attempt already spent: the step records that
    # attempt (stopped early, its policy) and continues it from its checkpoint, not anew.
    resumed = {**context, "rl_timesteps": trained}
    client.runs.wait(thread_id, GRAPH, input=None, context=resumed)
    runs = state_of(client, thread_id)["values"]["rl_runs"]
    cancelled, continued = runs
    assert cancelled["stopped_early"] and cancelled["env_steps"] == trained
    assert Path(cancelled["policy_path"]).parent == curve.parent
    assert Path(continued["policy_path"]).parent == curve.parent
    assert continued["env_steps"] == 0
    print(
        f"first progress at {first['env_steps']} env steps; API latency {latency:.2f}s "
        f"during training; worker stopped {stopped_after:.1f}s after cancel"
    )


@pytest.mark.faults
def test_node_timeout_stops_training_and_keeps_the_policy(
    client: SyncLangGraphClient, runs_dir: str
) -> None:
    context = {**SMALL, "runs_dir": runs_dir, "rl_timesteps": 200_000, "node_timeout": 4.0}
    thread_id = prepare_thread(client, GRAPH, context, rl_plan("timed_job", "A timed job."))
    started = time.monotonic()
    run = client.runs.create(thread_id, GRAPH, input=None, context=context)
    run_id = str(run["run_id"])
    status = "pending"
    while status in ("pending", "running") and time.monotonic() - started < 120:
        time.sleep(0.5)
        status = client.runs.get(thread_id, run_id)["status"]
    seconds = time.monotonic() - started
    if status in ("pending", "running"):
        client.runs.cancel(thread_id, run_id, action="interrupt")
        pytest.fail("node_timeout did not stop the training step within 120 s")
    assert status == "success", status
    values = state_of(client, thread_id)["values"]
    (record,) = values["rl_runs"]
    assert record["stopped_early"] and record["env_steps"] < 200_000
    assert any(a["subaction"] == "timed_job" for a in values["library"].values())
    print(f"node_timeout 4s: trained {record['env_steps']} env steps, run took {seconds:.1f}s")


def test_server_keeps_checkpoints_in_postgres(
    local_server: Any, postgres_url: str, tmp_path: Path
) -> None:
    from rlgpt.checkpoint import open_checkpointer
    from rlgpt.server_checkpointer import URL_ENV as PG_URL_ENV

    env = {URL_ENV: os.environ[URL_ENV], PG_URL_ENV: postgres_url}
    with graph_server(tmp_path, env, checkpointer=True) as running:
        pg_client = get_sync_client(url=running.url, timeout=120)
        thread_id = prepare_thread(pg_client, GRAPH, {**SMALL, "runs_dir": str(tmp_path / "runs")})
        assert "AsyncPostgresSaver" in running.log_text()
    # The checkpoints outlive the server: read them straight from the database.
    with open_checkpointer(postgres_url) as saver:
        saved = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
        assert saved is not None
        assert saved.checkpoint["channel_values"]["todo"] == ["get_wood"]
        assert len(list(saver.list({"configurable": {"thread_id": thread_id}}))) >= 3
    print(f"server with postgres checkpointer answered after {running.start_seconds:.1f}s")


def _interrupt_value(client: SyncLangGraphClient, thread_id: str) -> dict[str, Any]:
    (task,) = [t for t in state_of(client, thread_id)["tasks"] if t.get("interrupts")]
    value: dict[str, Any] = task["interrupts"][0]["value"]
    return value


def test_human_review_over_the_server(client: SyncLangGraphClient, runs_dir: str) -> None:
    context = {**SMALL, "runs_dir": runs_dir, "approve_plan": True, "approve_rl": True}
    # Plan review: the plan is entered as the planner's output, so no model is asked.
    thread = client.threads.create()
    thread_id = str(thread["thread_id"])
    client.runs.wait(
        thread_id, GRAPH, input={"task": TASK}, context=context, interrupt_before=["planner"]
    )
    client.threads.update_state(thread_id, {"plan": PLAN, "todo": ["get_wood"]}, as_node="planner")
    client.runs.wait(thread_id, GRAPH, input=None, context=context)
    review = _interrupt_value(client, thread_id)
    assert (review["kind"], review["plan"]) == ("approve_plan", PLAN)
    client.runs.wait(
        thread_id,
        GRAPH,
        command={"resume": {"action": "approve"}},
        context=context,
        interrupt_before=["coder"],
    )
    assert state_of(client, thread_id)["next"] == ["coder"]

    # RL budget review on a thread whose next step is training.
    thread_id = prepare_thread(client, GRAPH, context)
    client.runs.wait(thread_id, GRAPH, input=None, context=context)
    review = _interrupt_value(client, thread_id)
    assert review["kind"] == "approve_rl"
    assert review["jobs"][0]["subaction"] == "get_wood"
    client.runs.wait(
        thread_id,
        GRAPH,
        command={"resume": {"action": "approve", "timesteps": 200}},
        context=context,
    )
    values = state_of(client, thread_id)["values"]
    (run,) = values["rl_runs"]
    assert 200 <= run["env_steps"] < context["rl_timesteps"]
    assert values["report_path"]


def test_a_run_that_cannot_work_fails_before_it_starts(
    client: SyncLangGraphClient, runs_dir: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    context = {**SMALL, "runs_dir": runs_dir, "coder_model": f"{url}#m"}
    thread_id = str(client.threads.create()["thread_id"])
    run = client.runs.create(thread_id, GRAPH, input={"task": TASK}, context=context)
    result: Any = client.runs.join(thread_id, str(run["run_id"]))
    # The run ends in error with the preflight's line; nothing ran and nothing was written.
    assert client.runs.get(thread_id, str(run["run_id"]))["status"] == "error"
    error = result["__error__"]
    assert error["error"] == "PreflightError"
    assert error["message"].startswith(f"preflight: coder_model = {url}#m: cannot connect to")
    assert state_of(client, thread_id)["next"] == ["start"]
    assert not Path(runs_dir).exists()
