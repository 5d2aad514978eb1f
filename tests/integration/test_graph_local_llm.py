"""The full graph against the real embedded model server, and a killed CLI run resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rlgpt.graph.context import Context
from rlgpt.llm.local_server import URL_ENV
from tests.helpers import finished_exit_code, run_graph

pytestmark = pytest.mark.integration

SMALL = {
    # The session's server runs the small model; the run names it, so its records do too.
    "planner_model": "local:smollm2",
    "coder_model": "local:smollm2",
    "critic_model": "local:smollm2",
    "plan_revisions": 1,
    "code_repairs": 0,
    "reuse_library": False,
    "eval_episodes": 3,
    "code_check_episodes": 2,
    "subaction_max_steps": 200,
    "code_action_max_steps": 200,
    "rl_timesteps": 1024,
    "rl_n_steps": 128,
    "max_inner_loops": 1,
    "max_outer_loops": 1,
    "llm_max_tokens": 1200,
    "llm_max_retries": 1,
}


def test_full_graph_on_the_local_model(local_server: Any, tmp_path: Path) -> None:
    ctx = Context(runs_dir=str(tmp_path), gif=True, **{**SMALL, "max_outer_loops": 0})  # type: ignore[arg-type]
    state, nodes = run_graph("crafter:collect_wood", ctx, "local-1")
    assert nodes[0] == "start" and nodes[-1] == "report"
    assert state["usage"]["planner"]["calls"] >= 1
    assert state["usage"]["planner"]["output_tokens"] > 0
    report = Path(state["report_path"]).read_text()
    assert "## Model usage" in report
    metrics = json.loads((Path(state["run_dir"]) / "metrics.json").read_text())
    assert metrics["context"]["planner_model"] == "local:smollm2"
    # The plan check completes whatever the tiny model plans, so a plan is always coded and
    # evaluated: every evaluation ran its 3 held-out episodes and its steps are counted.
    evaluations = state["evaluations"]
    assert evaluations and all(len(e["episode_results"]) == e["episodes"] == 3 for e in evaluations)
    for e in evaluations:
        assert e["env_steps"] == sum(r["length"] for r in e["episode_results"])
    assert state["env_steps"]["evaluation"] == sum(e["env_steps"] for e in evaluations)
    assert "code_check" in state["env_steps"]
    assert len(state["verdicts"]) == len(evaluations) and state["verdicts"][-1]["route"] == "end"
    code = [r for r in state["library"].values() if r["kind"] == "code"]
    assert code and all(Path(r["path"]).is_file() for r in code)
    print(
        "local model run:",
        json.dumps(
            {
                "nodes": nodes,
                "task_success": [e["task_success_rate"] for e in state.get("evaluations", [])],
                "errors": [e["kind"] for e in state.get("errors", [])],
                "usage": state["usage"],
            }
        ),
    )


@pytest.mark.faults
def test_killed_cli_run_resumes_graph_and_training(local_server: Any, tmp_path: Path) -> None:
    """SIGKILL in the middle of RL training; --resume continues the graph and the training."""
    env = {**os.environ, URL_ENV: os.environ[URL_ENV]}
    quick = {
        **SMALL,
        "max_inner_loops": 0,
        "max_outer_loops": 0,
        "critic": "rules",
        "rl_timesteps": 6000,
        "rl_checkpoint_every": 1500,
    }
    flags = [
        f"--{'' if v else 'no-'}{k.replace('_', '-')}"
        if isinstance(v, bool)
        else f"--{k.replace('_', '-')}={v}"
        for k, v in quick.items()
    ]
    cmd = [sys.executable, "-m", "rlgpt.cli", "--json-logs", "run", "--runs-dir", str(tmp_path)]

    # 1. Plan, then pause for review (no terminal: the run stops with exit code 3).
    first = subprocess.run(
        [*cmd, "--task", "crafter:collect_wood", "--approve-plan", "--no-gif", *flags],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert first.returncode == 3, first.stdout + first.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]

    # 2. The reviewer replaces the plan by one RL step; kill the run once training has
    #    written a resumable checkpoint.
    plan = {
        "sub_actions": [
            {
                "id": "wood",
                "description": "collect wood",
                "predicate": {"kind": "achievement", "name": "collect_wood"},
                "method": "rl",
            }
        ]
    }
    answer = json.dumps({"action": "edit", "plan": plan})
    proc = subprocess.Popen(
        [*cmd, "--resume", run_dir.name, "--answer", answer],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not list(run_dir.glob("rl/*/resume.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before training was checkpointed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (saved,) = run_dir.glob("rl/*/resume.json")
    steps_at_kill = json.loads(saved.read_text())["env_steps"]
    assert 0 < steps_at_kill < quick["rl_timesteps"]

    # 3. Resume: the graph goes on from its checkpoint, training from its saved policy.
    resumed = subprocess.run(
        [*cmd, "--resume", run_dir.name], env=env, capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == finished_exit_code(run_dir), resumed.stdout + resumed.stderr
    events = [json.loads(line) for line in resumed.stderr.splitlines() if line.startswith("{")]
    names = [e.get("event") for e in events]
    assert "run_started" not in names and "planned" not in names
    (resume_event,) = [e for e in events if e.get("event") == "rl_resumed"]
    assert resume_event["env_steps"] >= steps_at_kill
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run,) = metrics["state"]["rl_runs"]
    assert run["env_steps"] >= quick["rl_timesteps"]
    # The action library is whole: its manifest parses and names files that exist.
    manifest = json.loads((run_dir / "library" / "library.json").read_text())
    for entry in manifest["actions"].values():
        assert (run_dir / "library" / entry["path"]).exists()
    assert "wood_policy" in manifest["actions"]
    print(
        f"killed at {steps_at_kill} env steps; resumed from {resume_event['env_steps']}; "
        f"finished at {run['env_steps']}"
    )
