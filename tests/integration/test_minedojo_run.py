"""A MineDojo run on a machine without its simulator: a clear error before the run, not a crash."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from rlgpt.checkpoint import open_checkpointer
from rlgpt.envs.base import EnvSettings, load_adapter, unavailable_reason
from rlgpt.exit_codes import ExitCode
from rlgpt.graph.builder import builder
from rlgpt.graph.context import Context
from rlgpt.graph.preflight import PreflightError
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


def test_rlgpt_run_stops_before_the_run_with_what_is_missing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "rlgpt.cli", "--json-logs", "run", "--env", "minedojo"]
    command += ["--task", TASK, "--runs-dir", str(runs)]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    # Preflight: one line naming the setting and what is missing, before any model is asked
    # or any folder is made.
    assert done.returncode == ExitCode.BAD_CONFIG, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"preflight: env = minedojo: {MISSING}" in done.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_the_graph_refuses_to_start_a_run_without_the_simulator(tmp_path: Path) -> None:
    """The same check in the graph's first node, for runs started on the graph server."""
    runs = tmp_path / "runs"
    ctx = Context(env="minedojo", runs_dir=str(runs))
    with open_checkpointer(str(tmp_path / "checkpoints.sqlite")) as saver:
        graph = builder.compile(checkpointer=saver)
        config: RunnableConfig = {"configurable": {"thread_id": "t"}}
        with pytest.raises(PreflightError) as raised:
            graph.invoke({"task": TASK}, config, context=ctx)
        assert graph.get_state(config).next == ("start",)  # nothing ran; it can be retried
    (problem,) = raised.value.problems
    assert (problem.setting, problem.value) == ("env", "minedojo")
    assert problem.message.startswith(MISSING)
    assert not runs.exists()


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
