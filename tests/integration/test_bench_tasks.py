"""`rlgpt bench tasks` end to end: one task, one seed, the real graph on the small local model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from rlgpt.bench.cli import add_bench_arguments, render_markdown, run_bench

pytestmark = pytest.mark.integration

TINY = {
    "rl_timesteps": 500,
    "rl_n_steps": 128,
    "eval_episodes": 2,
    "code_check_episodes": 1,
    "code_action_max_steps": 100,
    "subaction_max_steps": 100,
    "max_inner_loops": 0,
    "max_outer_loops": 0,
    "llm_max_tokens": 300,
    "llm_max_retries": 1,
    "plan_revisions": 0,
    "code_repairs": 0,
}


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.timeout(420)
def test_tasks_bench_one_run(local_server: Any, tmp_path: Path) -> None:
    context = tmp_path / "tiny.json"
    context.write_text(json.dumps(TINY))
    out = tmp_path / "results"
    runs = tmp_path / "runs"
    argv = [
        "tasks",
        "--tasks", "crafter:collect_wood",
        "--seeds", "0",
        "--model", "local:smollm2",
        "--context", str(context),
        "--runs-dir", str(runs),
        "--out", str(out),
        "--tag", "smoke",
    ]  # fmt: skip
    assert run_bench(_args(*argv)) == 0

    result = json.loads((out / "tasks_smoke.json").read_text())
    assert result["suite"] == "tasks"
    assert result["git"]["commit"] and result["command"]
    config = result["config"]
    assert config["model"] == "local:smollm2" and config["seeds"] == [0]
    assert config["effective_context"]["privileged"] is False
    assert config["effective_context"]["rl_timesteps"] == 500
    (run,) = result["runs"]
    assert run["task"] == "crafter:collect_wood" and run["seed"] == 0
    assert run["status"] == "finished", run.get("traceback")
    run_dir = Path(run["run_dir"])
    assert run_dir.parent == runs / "collect_wood-seed0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["context"]["seed"] == 0
    assert metrics["context"]["planner_model"] == "local:smollm2"
    # The record agrees with the run's own metrics.
    state = metrics["state"]
    evaluations = state.get("evaluations", [])
    if evaluations:
        assert run["success"] == evaluations[-1]["task_success_rate"]
        assert run["episodes"] == evaluations[-1]["episodes"] == 2
    else:
        assert run["success"] is None and run["failure"]["step"] is None
    usage = state["usage"]
    assert run["llm"]["calls"] == sum(u["calls"] for u in usage.values()) >= 1
    assert run["llm"]["input_tokens"] == sum(u["input_tokens"] for u in usage.values()) > 0
    assert run["llm"]["seconds"] > 0
    steps = run["env_steps"]
    assert steps["total"] == steps["rl_jobs"] + steps["evaluations"] + steps["code_checks"]
    assert steps["rl_jobs"] == sum(r["env_steps"] for r in state.get("rl_runs", []))
    assert run["wall_time"] > 0
    if not run["solved"]:
        assert "critic_feedback" in run["failure"] or run["failure"]["step"] is None

    (row,) = result["aggregate"]
    assert row["task"] == "crafter:collect_wood" and row["n"] == 1
    assert row["per_seed"] == {"0": run["success"] or 0.0}
    markdown = (out / "tasks_smoke.md").read_text()
    assert markdown == render_markdown(result)
    assert "| crafter:collect_wood |" in markdown
    assert (out / "tasks_smoke.png").stat().st_size > 1000

    # Resuming a finished bench runs nothing and keeps the run.
    assert run_bench(_args(*argv, "--resume")) == 0
    again = json.loads((out / "tasks_smoke.json").read_text())
    assert again["runs"] == result["runs"] and len(again["invocations"]) == 2
