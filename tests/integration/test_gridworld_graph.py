"""The whole graph on a second env plugin (the grid world of tests/plugins), with scripted models.

Everything but the models is real: the plugin found through its entry point in this
process and in every worker, code actions checked in the sandbox on grid-world episodes,
an SB3 job on the grid world, the critic's held-out rollouts and the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlgpt import plugins
from rlgpt.actions.worker import run_in_worker
from rlgpt.envs.base import load_adapter
from tests.fakes import ScriptedChatModel
from tests.helpers import (
    GRIDWORLD_PLAN,
    code,
    fetch_code,
    run_graph,
    scripted_context,
    undefined_name_code,
    verdict,
)

pytestmark = pytest.mark.integration

TASK = "gridworld:collect_gem"

GET_KEY = fetch_code("key")
GET_GEM = fetch_code("gem")

BROKEN_GEM = undefined_name_code("gem", "gem", "gems_needed")

PLAN = GRIDWORLD_PLAN
SETUP = {"code_actions": [], "shaping": [], "episode_length": 30, "start_after_previous": True}
RL_TIMESTEPS = 3072


def _plugin_in_this_process() -> dict[str, Any]:
    """Where this process finds the grid world (run in a forkserver worker)."""
    adapter = load_adapter("gridworld")
    return {
        "source": plugins.envs.describe().get("gridworld"),
        "module": type(adapter).__module__,
        "tasks": adapter.tasks(),
    }


def test_workers_load_the_plugin_through_its_entry_point() -> None:
    found = run_in_worker(_plugin_in_this_process, {}, timeout=120)
    # Not "registered in process": the worker read the plugin's dist-info entry point.
    assert found["source"] == "rlgpt_gridworld.adapter:GridWorldAdapter"
    assert found["module"] == "rlgpt_gridworld.adapter"
    assert TASK in found["tasks"]


def test_the_graph_runs_a_plan_code_rl_and_the_critic_on_the_grid_world(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [
        json.dumps(PLAN),  # planner
        code(GET_KEY),  # coder: code steps first
        code(BROKEN_GEM),
        json.dumps(SETUP),  # coder: the RL set-up of open_door
        verdict("coder", ["get_gem"], "get_gem crashes"),  # critic
        code(GET_GEM),  # coder, on the critic's feedback
    ]
    adapter = load_adapter("gridworld")
    ctx = scripted_context(
        tmp_path,
        env="gridworld",
        llm_max_retries=0,
        code_check_episodes=3,
        code_action_max_steps=60,
        subaction_max_steps=60,
        eval_episodes=10,
        max_inner_loops=1,
        max_outer_loops=0,
        rl_timesteps=RL_TIMESTEPS,
        rl_n_steps=128,
    )
    state, order = run_graph(TASK, ctx, "grid")

    assert order == [
        "start", "planner", "review_plan", "coder", "rl_trainer", "critic",
        "coder", "rl_trainer", "critic", "report",
    ]  # fmt: skip
    assert scripted.remaining == 0
    assert state["task_spec"]["name"] == TASK and state["task_spec"]["env"] == "gridworld"
    # The planner and the coder read the grid world's manual and skill API, nothing of Crafter.
    planner_prompt = "\n".join(str(m.content) for m in scripted.prompts[0])
    assert "GRID WORLD MANUAL" in planner_prompt and "api.move_to(name" in planner_prompt
    coder_prompt = "\n".join(str(m.content) for m in scripted.prompts[1])
    assert 'api.seen(name: "key"|"door"|"gem")' in coder_prompt
    for prompt in (planner_prompt, coder_prompt):
        assert "crafter" not in prompt.lower()

    # Code actions were checked in the sandbox on grid-world episodes.
    library = state["library"]
    assert library["get_key"]["check"]["success_rate"] == 1.0
    assert library["get_key"]["check"]["episodes"] == 3
    assert library["get_gem"]["version"] == 2
    # One SB3 job on the grid world, its policy a library action.
    (run,) = state["rl_runs"]
    # The budget covers the agent's steps and the steps code actions took before them.
    assert run["subaction"] == "open_door" and not run["stopped_early"]
    assert run["env_steps"] + run.get("prelude_env_steps", 0) >= RL_TIMESTEPS
    episodes = json.loads(Path(run["curve_path"]).read_text())
    assert episodes, "the training job finished no episode"
    policy = library["open_door_policy"]
    assert policy["kind"] == "policy" and Path(policy["path"]).exists()

    first, second = state["evaluations"]
    for ev in (first, second):
        assert ev["episodes"] == 10
        assert list(ev["achievements"]) == adapter.achievements()
        assert ev["achievements"]["collect_key"] == 1.0
        assert ev["score"] == pytest.approx(adapter.score(ev["achievements"]))
        assert ev["subaction_success"]["get_key"] == 1.0
    # The broken code never takes the gem; the repaired code takes it whenever the door opened.
    assert first["task_success_rate"] == 0.0 and first["subaction_success"]["get_gem"] == 0.0
    assert second["subaction_success"]["get_gem"] == second["subaction_success"]["open_door"]
    assert second["task_success_rate"] == second["achievements"]["collect_gem"]
    assert second["task_success_rate"] == second["subaction_success"]["get_gem"]

    critic_prompt = str(scripted.prompts[4][-1].content)
    assert f"Task: {TASK}" in critic_prompt and "Score: " in critic_prompt
    assert "get_gem crashes" in str(scripted.prompts[5][-1].content)
    coder_verdict, last_verdict = state["verdicts"]
    assert (coder_verdict["route"], coder_verdict["source"]) == ("coder", "llm")
    assert coder_verdict["subaction_ids"] == ["get_gem"]
    assert last_verdict["route"] == "end"

    report = Path(state["report_path"]).read_text()
    assert f"`{TASK}`" in report and "Unlock the achievement collect_gem." in report
    assert "environment: `gridworld`" in report
    assert f"**{second['task_success_rate']:.0%}**" in report
    assert f"gridworld score {second['score']:.2f}" in report
    assert "## Achievements (last evaluation)" in report
    for name, rate in second["achievements"].items():
        assert f"| {name} | {rate:.0%} |" in report
    assert "crafter" not in report.lower()
    gif = Path(second["gif_path"])
    assert gif.exists() and gif.name in report
    metrics = json.loads((Path(state["run_dir"]) / "metrics.json").read_text())
    assert metrics["context"]["env"] == "gridworld"
    door = second["subaction_success"]["open_door"]
    print(
        f"grid world: task success {first['task_success_rate']:.0%} -> "
        f"{second['task_success_rate']:.0%}; open_door {door:.0%}; training "
        f"{run['env_steps']} env steps at {run['steps_per_second']:.0f}/s, "
        f"{len(episodes)} episodes, train success {run['train_success_rate']:.0%}"
    )
