"""A MineDojo run on a machine without its simulator: a clear, recorded error, not a crash."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from rlgpt.checkpoint import open_checkpointer
from rlgpt.envs.base import EnvSettings, load_adapter, unavailable_reason
from rlgpt.graph.builder import builder
from rlgpt.graph.context import Context
from rlgpt.nodes.critic import RulesCritic
from rlgpt.nodes.rl_trainer import SB3Trainer
from tests.helpers import rl_plan

pytestmark = pytest.mark.integration

TASK = "minedojo:harvest_log"
#: The first words of the adapter's missing-simulator message.
MISSING = "MineDojo is not available: it needs the `minedojo` package"


@pytest.fixture(autouse=True)
def _no_minedojo_here() -> None:
    """These tests are about a machine without MineDojo, which this one is."""
    assert importlib.util.find_spec("minedojo") is None, "minedojo is installed here"


def test_the_adapter_names_what_is_missing() -> None:
    adapter = load_adapter("minedojo")
    reason = unavailable_reason(adapter)
    assert reason is not None and reason.startswith(MISSING)
    with pytest.raises(RuntimeError, match="JDK 8"):
        adapter.make_env(adapter.task(TASK), EnvSettings())


def test_rlgpt_run_records_the_missing_simulator_and_writes_its_report(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "rlgpt.cli", "--json-logs", "run", "--env", "minedojo"]
    command += ["--task", TASK, "--runs-dir", str(runs)]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    # No model is asked (the default models are not running here): the run ends at once,
    # as a failed run that names why.
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "no evaluation:" in done.stderr and "MineDojo is not available" in done.stderr
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (warning,) = [e for e in logged if e.get("event") == "env_unavailable"]
    assert warning["env"] == "minedojo" and warning["reason"].startswith(MISSING)

    (run_dir,) = [d for d in runs.iterdir() if (d / "report.md").exists()]
    report = (run_dir / "report.md").read_text()
    assert f"`{TASK}`" in report and "environment: `minedojo`" in report
    assert f"No evaluation ran. `start` env_unavailable: {MISSING}" in report
    assert "score" not in report.split("## Plan")[0]  # MineDojo's tasks have no achievements
    with open_checkpointer(str(runs / "checkpoints.sqlite")) as saver:
        graph = builder.compile(checkpointer=saver)
        config: RunnableConfig = {"configurable": {"thread_id": run_dir.name}}
        snapshot = graph.get_state(config)
    values: dict[str, Any] = dict(snapshot.values)
    assert snapshot.next == ()
    assert values["task_spec"]["env"] == "minedojo"
    (error,) = values["errors"]
    assert (error["node"], error["kind"]) == ("start", "env_unavailable")
    assert error["message"].startswith(MISSING)
    assert Path(values["report_path"]) == run_dir / "report.md"
    assert not values.get("plan") and values["evaluations"] == []
    assert values["usage"] == {}  # no model call was made
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["state"]["errors"] == values["errors"]


def test_nodes_that_build_the_env_record_its_error(tmp_path: Path) -> None:
    """Past the start check (a plan entered by hand), training and evaluation fail on the
    adapter's error and record it."""
    run_dir = tmp_path / "run"
    (run_dir / "library").mkdir(parents=True)
    plan = rl_plan("get_log", "Harvest a log.", item="log")
    state: dict[str, Any] = {
        "task": TASK,
        "task_spec": load_adapter("minedojo").task(TASK).model_dump(mode="json"),
        "run_id": "run",
        "run_dir": str(run_dir),
        "plan": plan,
        "todo": ["get_log"],
        "setups": {"get_log": {"code_actions": [], "episode_length": 50}},
        "inner_loops": 0,
        "outer_loops": 0,
    }
    runtime = Runtime(context=Context(env="minedojo", critic="rules", gif=False, eval_episodes=1))
    trained = SB3Trainer()(state, runtime)  # type: ignore[arg-type]
    (error,) = trained["errors"]
    assert (error["node"], error["kind"], error["subaction"]) == (
        "rl_trainer",
        "training_failed",
        "get_log",
    )
    assert MISSING in error["message"]
    judged = RulesCritic()(state, runtime)  # type: ignore[arg-type]
    (error,) = judged["errors"]
    assert (error["node"], error["kind"]) == ("critic", "evaluation_failed")
    assert MISSING in error["message"]
    (verdict,) = judged["verdicts"]
    assert verdict["route"] == "end" and MISSING in verdict["feedback"]
    assert "evaluations" not in judged
