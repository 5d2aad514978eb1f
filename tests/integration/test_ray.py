"""RL jobs and benchmark runs as Ray tasks on a real two-node Ray cluster on this machine.

The cluster is Ray's own multi-node test cluster (`ray_cluster` in conftest.py): a head and
a worker node of one CPU each, every server on loopback. The jobs are real SB3 training on
the grid world of tests/plugins (and real Crafter for the benchmark), so a result that
matches `local` is the same training, not a mock of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from langgraph.graph import END, START, StateGraph
from stable_baselines3 import PPO

from rlgpt.actions.library import ActionLibrary
from rlgpt.bench.cli import run_bench
from rlgpt.envs.base import load_adapter
from rlgpt.execution import Job, JobNotStarted
from rlgpt.execution.ray_executor import RayExecutor
from rlgpt.graph.builder import _dispatch
from rlgpt.graph.context import Context
from rlgpt.graph.schemas import Plan
from rlgpt.graph.state import State
from rlgpt.nodes.critic import EVAL_EPISODES_PER_JOB, evaluate
from rlgpt.tools.rl_job import RLJob
from rlgpt.tools.rl_pipeline import train_policy
from tests.helpers import (
    GRIDWORLD_PLAN,
    bench_args,
    fetch_code,
    scripted_context,
)
from tests.integration.conftest import RayCluster

pytestmark = pytest.mark.integration

#: /proc/net spellings of 127.0.0.1 (IPv4, IPv4-mapped IPv6) and ::1.
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}

TWO_RL_STEPS: dict[str, Any] = {
    "rationale": "Two skills, each learned on its own.",
    "sub_actions": [
        {
            "id": "get_key",
            "description": "Pick up the key.",
            "predicate": {"kind": "inventory", "name": "key", "at_least": 1},
            "method": "rl",
            "reason": "Learned.",
        },
        {
            "id": "get_gem",
            "description": "Take the gem.",
            "predicate": {"kind": "achievement", "name": "collect_gem"},
            "method": "rl",
            "reason": "Learned.",
        },
    ],
}
#: Each step trains from a fresh episode, so the two jobs are independent.
SETUP = {"code_actions": [], "shaping": [], "episode_length": 30, "start_after_previous": False}


def test_the_cluster_listens_on_loopback_only(ray_cluster: RayCluster) -> None:
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    # GCS, two raylets with their object managers, agents, workers: a dozen listeners.
    assert len(ray_cluster.opened) >= 6
    assert {address for address, _ in ray_cluster.opened} <= LOOPBACK


# ------------------------------------------------------------------ rl_trainer
def _rl_trainer_graph() -> Any:
    """The rl_trainer node alone, wrapped as the app's graph wraps it (stop signal, timeout)."""
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("rl_trainer", _dispatch("rl_trainer"))
    builder.add_edge(START, "rl_trainer")
    builder.add_edge("rl_trainer", END)
    return builder.compile()


def _train_two_steps(run_dir: Path, ctx: Context) -> tuple[dict[str, Any], list[dict]]:
    """One rl_trainer step on the two-step plan; its update and its custom events."""
    run_dir.mkdir(parents=True)
    state = {
        "task": "gridworld:collect_gem",
        "run_dir": str(run_dir),
        "task_spec": load_adapter("gridworld").task("gridworld:collect_gem").model_dump(),
        "plan": TWO_RL_STEPS,
        "todo": ["get_key", "get_gem"],
        "setups": {"get_key": SETUP, "get_gem": SETUP},
    }
    update: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    for mode, chunk in _rl_trainer_graph().stream(
        state, context=ctx, stream_mode=["updates", "custom"]
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            update = chunk["rl_trainer"]
    return update, events


def _parameters(policy_path: str) -> dict[str, torch.Tensor]:
    return PPO.load(policy_path, device="cpu").policy.state_dict()


def test_rl_trainer_trains_independent_steps_at_once_with_the_results_of_local(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    settings = {"env": "gridworld", "rl_timesteps": 2048, "rl_n_steps": 64, "seed": 3}
    local, _ = _train_two_steps(tmp_path / "local", scripted_context(tmp_path, **settings))
    started = time.monotonic()
    remote, events = _train_two_steps(
        tmp_path / "ray",
        scripted_context(tmp_path, executor="ray", ray_address=ray_cluster.address, **settings),
    )
    print(f"two 2,048-step jobs on ray: {time.monotonic() - started:.1f} s")
    assert not local["errors"] and not remote["errors"]
    assert [r["subaction"] for r in remote["rl_runs"]] == ["get_key", "get_gem"]
    for mine, theirs in zip(local["rl_runs"], remote["rl_runs"], strict=True):
        assert mine["env_steps"] == theirs["env_steps"] == 2048
        assert mine["train_success_rate"] == theirs["train_success_rate"]
        # Same seeds, same training: the same episodes and the same weights.
        assert json.loads(Path(mine["curve_path"]).read_text()) == json.loads(
            Path(theirs["curve_path"]).read_text()
        )
        ours, remote_weights = _parameters(mine["policy_path"]), _parameters(theirs["policy_path"])
        assert all(torch.equal(ours[k], remote_weights[k]) for k in ours)
    assert set(remote["library"]) == {"get_key_policy", "get_gem_policy"}
    # Both jobs ran at once, one on each node, and their progress reached the graph's stream.
    nodes = {e["job"]: e["node"] for e in events if e.get("event") == "job_started"}
    assert set(nodes) == {"get_key", "get_gem"} and len(set(nodes.values())) == 2
    finals = [e for e in events if e.get("event") == "rl_progress" and e["final"]]
    assert sorted(e["job"] for e in finals) == ["get_gem", "get_key"]
    assert all(e["env_steps"] == 2048 for e in finals)


def test_a_node_timeout_stops_the_remote_training_and_keeps_both_policies(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    ctx = scripted_context(
        tmp_path, env="gridworld", rl_timesteps=5_000_000, rl_n_steps=64, node_timeout=8.0,
        executor="ray", ray_address=ray_cluster.address,
    )  # fmt: skip
    started = time.monotonic()
    update, events = _train_two_steps(tmp_path / "run", ctx)
    took = time.monotonic() - started
    assert [r["subaction"] for r in update["rl_runs"]] == ["get_key", "get_gem"]
    for run in update["rl_runs"]:
        assert run["stopped_early"] and 0 < run["env_steps"] < 5_000_000
        assert Path(run["policy_path"]).exists()
    assert set(update["library"]) == {"get_key_policy", "get_gem_policy"}
    assert took < 90, f"the step took {took:.0f} s with a node timeout of 8 s"
    assert len({e["node"] for e in events if e.get("event") == "job_started"}) == 2


# ------------------------------------------------------------------ critic
def test_a_large_evaluation_is_split_over_the_nodes_with_the_same_result(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    library = ActionLibrary(tmp_path / "library")
    library.add_code("get_key", fetch_code("key"), max_steps=60)
    library.add_code("get_gem", fetch_code("gem"), max_steps=60)
    plan = Plan.model_validate(GRIDWORLD_PLAN)
    state: Any = {
        "run_dir": str(tmp_path),
        "task_spec": load_adapter("gridworld").task("gridworld:collect_gem").model_dump(),
        "library": {name: library.record(name) for name in ("get_key", "get_gem")},
    }
    settings = {"env": "gridworld", "eval_episodes": 25, "subaction_max_steps": 60}
    local = evaluate(state, scripted_context(tmp_path, **settings), plan)
    remote = evaluate(
        state,
        scripted_context(tmp_path, executor="ray", ray_address=ray_cluster.address, **settings),
        plan,
    )
    assert remote["episodes"] == local["episodes"] == 25 > 2 * EVAL_EPISODES_PER_JOB
    assert remote["episode_results"] == local["episode_results"]
    assert remote["subaction_success"] == local["subaction_success"]
    assert remote["env_steps"] == local["env_steps"] > 0
    # The key is fetched by code; the door has no policy here, so the gem is never reached.
    assert remote["subaction_success"]["get_key"] > 0
    assert remote["task_success_rate"] == local["task_success_rate"] == 0


# ------------------------------------------------------------------- bench
def test_a_learning_suite_fans_out_over_the_nodes_into_one_table(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    args = bench_args(
        "learning", "--quick", "--observation", "symbolic", "--methods", "a,b",
        "--seeds", "0,1", "--library", "scripted-baseline", "--executor", "ray",
        "--ray-address", ray_cluster.address, "--out", str(out),
        "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert run_bench(args) == 0
    result = json.loads((out / "learning_quick.json").read_text())
    assert result["config"]["executor"] == "ray"
    methods = {m["key"]: m for m in result["methods"]}
    assert set(methods) == {"a", "b"}
    runs = [r for m in methods.values() for r in m["runs"]]
    assert sorted((r["method"], r["seed"]) for r in runs) == [
        ("a", 0), ("a", 1), ("b", 0), ("b", 1)
    ]  # fmt: skip
    # Code actions ran in their sandboxed workers inside the Ray tasks.
    assert all(r["env_steps"] >= result["config"]["budget"] for r in runs)
    assert all(r["episodes"] > 0 for r in runs)
    assert len({r["executor"]["node"] for r in runs}) == 2
    # One table, each method's row over both seeds (n = 2).
    rows = [r for r in (out / "learning_quick.md").read_text().splitlines() if "PPO, prim" in r]
    assert len(rows) == 2 and all(" | 2 | " in r for r in rows)


# ------------------------------------------------------------------- faults
def _grid_job(out: Path, timesteps: int, seed: int = 0) -> RLJob:
    return RLJob(
        env="gridworld",
        task="gridworld:collect_gem",
        timesteps=timesteps,
        n_steps=64,
        episode_length=30,
        seed=seed,
        output_dir=str(out),
        checkpoint_every=1000,
        progress_every=500,
    )


def test_a_job_on_a_lost_node_finishes_on_another_from_its_checkpoint(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    cluster = ray_cluster.cluster
    extra = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    budget = 12_000
    jobs = [
        Job(f"job{i}", train_policy, (_grid_job(tmp_path / f"job{i}", budget, i),))
        for i in range(3)
    ]
    started_on: dict[str, list[str]] = {}
    removed: list[str] = []

    def on_progress(event: dict[str, Any]) -> None:
        job = event["job"]
        if event["event"] == "job_started":
            started_on.setdefault(job, []).append(event["node"])
        doomed = started_on.get(job, [""])[-1] == extra.node_id
        # Past its first checkpoint (1,000 steps), the node under the job goes away.
        if doomed and not removed and event.get("env_steps", 0) >= 2000:
            cluster.remove_node(extra)
            removed.append(job)

    outcomes = RayExecutor(ray_cluster.address).run(jobs, on_progress=on_progress)
    assert removed, f"no job ran on the extra node: {started_on}"
    (moved,) = removed
    outcome = next(o for o in outcomes if o.key == moved)
    assert outcome.ok, outcome.error
    # Started again on a surviving node, it continued from its last saved policy.
    assert len(started_on[moved]) == 2 and started_on[moved][1] != extra.node_id
    assert outcome.value.resumes == 1 and outcome.value.resumed_from >= 1000
    assert outcome.value.env_steps == budget
    assert all(o.ok and o.value.env_steps == budget for o in outcomes)


def test_stopping_a_run_stops_its_remote_training_and_keeps_the_policy(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    budget = 2_000_000
    job = Job("long", train_policy, (_grid_job(tmp_path / "long", budget),))
    asked: list[float] = []

    def should_stop() -> bool:
        return bool(asked)

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("event") == "rl_progress" and not asked:
            asked.append(time.monotonic())

    (outcome,) = RayExecutor(ray_cluster.address).run(
        [job], on_progress=on_progress, should_stop=should_stop
    )
    stopped_after = time.monotonic() - asked[0]
    assert outcome.ok, outcome.error
    result = outcome.value
    assert result.stopped_early and 0 < result.env_steps < budget
    assert Path(result.policy_path).exists()
    assert stopped_after < 30, f"the remote job stopped {stopped_after:.1f} s after the request"


def ignore_the_stop(
    seconds: float, on_progress: Any = None, should_stop: Any = None
) -> str:  # pragma: no cover - runs in a Ray worker
    """A job that never looks at its stop signal."""
    if on_progress is not None:
        on_progress({"event": "rl_progress"})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    return "finished"


def test_a_job_that_ignores_the_stop_is_cancelled_after_the_grace(ray_cluster: RayCluster) -> None:
    import ray

    started = time.monotonic()
    (outcome,) = RayExecutor(ray_cluster.address, stop_grace=1.0).run(
        [Job("stubborn", ignore_the_stop, (300.0,))], should_stop=lambda: True
    )
    assert isinstance(outcome.error, JobNotStarted)
    seen: list[dict[str, Any]] = []
    (outcome,) = RayExecutor(ray_cluster.address, stop_grace=1.0).run(
        [Job("stubborn", ignore_the_stop, (300.0,))],
        on_progress=seen.append,
        should_stop=lambda: bool([e for e in seen if e["event"] == "rl_progress"]),
    )
    # Interrupted after the grace, or (when the interrupt is ignored) its worker ended.
    ended = (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)
    assert isinstance(outcome.error, ended), outcome
    assert time.monotonic() - started < 60


# ------------------------------------------------------------ local cluster
LOCAL_CLUSTER = """
import json, os, stat, sys
from tests.helpers import listening_sockets
before = listening_sockets()
from rlgpt.execution.ray_cluster import connect
ray = connect()
opened = listening_sockets() - before
token = os.environ["RAY_AUTH_TOKEN_PATH"]
print(json.dumps({
    "node_ip": ray.util.get_node_ip_address(),
    "opened": sorted(a for a, _ in opened),
    "auth": os.environ["RAY_AUTH_MODE"],
    "token_mode": stat.S_IMODE(os.stat(token).st_mode),
    "token_in_home": token.startswith(os.environ["HOME"]),
    "ports": sorted(p for _, p in opened),
    "answer": ray.get(ray.remote(lambda: 42).remote()),
}))
"""


def test_a_local_cluster_is_on_loopback_with_a_private_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_CLUSTER],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["answer"] == 42
    assert found["node_ip"] == "127.0.0.1"
    assert found["opened"] and set(found["opened"]) <= LOOPBACK
    assert found["auth"] == "token" and found["token_mode"] == 0o600 and found["token_in_home"]
    assert 8265 not in found["ports"]  # no dashboard
