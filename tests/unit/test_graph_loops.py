"""The whole graph, driven by a scripted chat model, through the inner and the outer loop.

Everything but the model is real: Crafter, the sandboxed code actions, SB3, the critic's
held-out rollouts and the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlgpt.graph.builder import builder
from rlgpt.graph.context import Context
from tests.fakes import ScriptedChatModel
from tests.helpers import (
    GOOD_CODE,
    ONE_PASS,
    SCRIPTED_SETTINGS,
    code,
    plan,
    run,
    undefined_name_code,
    verdict,
)

BROKEN_CODE = undefined_name_code("wood", "tree", "wood_needed")


def test_inner_loop_fixes_a_broken_code_action(scripted: ScriptedChatModel, tmp_path: Path) -> None:
    scripted.answers = [
        plan(("get_wood", "achievement", "collect_wood", "code")),
        code(BROKEN_CODE),
        verdict("coder", ["get_wood"], "the code action crashes"),
        code(GOOD_CODE),
    ]
    state, order = run("crafter:collect_wood", tmp_path)
    assert order == [
        "start", "planner", "review_plan", "coder", "rl_trainer", "critic",
        "coder", "rl_trainer", "critic", "report",
    ]  # fmt: skip
    first, second = state["evaluations"]
    assert first["task_success_rate"] == 0.0
    assert any(f.get("error", {}).get("kind") == "runtime" for f in first["failures"])
    assert second["task_success_rate"] >= 2 / 3
    assert state["library"]["get_wood"]["version"] == 2
    # The coder's second prompt carries the critic's feedback.
    assert "the code action crashes" in str(scripted.prompts[3][-1].content)
    assert state["verdicts"][0]["route"] == "coder"
    assert state["verdicts"][-1]["route"] == "end"
    assert scripted.remaining == 0
    report = Path(state["report_path"]).read_text()
    assert "`get_wood` v2" in report and "the code action crashes" in report


def test_outer_loop_revises_the_plan_and_trains_a_policy(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [
        plan(
            ("get_diamond", "achievement", "collect_diamond", "code"),
            ("table", "achievement", "place_table", "code"),
        ),
        code(GOOD_CODE),
        code(GOOD_CODE),
        verdict("planner", [], "a diamond is out of reach; collect wood"),
        plan(
            ("get_wood", "achievement", "collect_wood", "code"),
            ("table", "achievement", "place_table", "rl"),
        ),
        # The plan check raises get_wood's check to the 2 wood a table uses.
        code(GOOD_CODE.replace('count("wood") < 1', 'count("wood") < 2')),
        json.dumps({"code_actions": ["get_wood"], "episode_length": 100}),
    ]
    # No revisions: the first plan goes ahead with what the rules find it lacks.
    state, order = run(
        "crafter:place_table",
        tmp_path,
        max_inner_loops=0,
        rl_timesteps=256,
        rl_n_steps=64,
        plan_revisions=0,
    )
    assert order.count("planner") == 2
    assert state["outer_loops"] == 1
    assert len(state["plan_history"]) == 2
    assert "a diamond is out of reach" in str(scripted.prompts[4][-1].content)
    assert [r["subaction"] for r in state["rl_runs"]] == ["table"]
    (job,) = state["rl_runs"]
    # Prelude steps (get_wood before each episode) count toward the job's budget.
    assert job["env_steps"] + job["prelude_env_steps"] >= 256
    assert job["prelude_env_steps"] > 0
    ledger = state["env_steps"]
    assert ledger["rl"] == job["env_steps"] and ledger["rl_prelude"] == job["prelude_env_steps"]
    assert ledger["evaluation"] == sum(e["env_steps"] for e in state["evaluations"]) > 0
    assert ledger["code_check"] > 0
    assert state["library"]["table_policy"]["kind"] == "policy"
    assert Path(state["library"]["table_policy"]["path"]).exists()
    first, second = state["evaluations"]
    assert list(first["subaction_success"]) == ["get_diamond", "table"]
    assert list(second["subaction_success"]) == ["get_wood", "table"]
    assert state["plan"]["sub_actions"][0]["predicate"]["at_least"] == 2
    assert second["subaction_success"]["get_wood"] >= 2 / 3
    assert state["verdicts"][-1]["route"] == "end"


def test_run_wide_env_step_budget_stops_training_once_spent(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [
        plan(
            ("get_wood", "achievement", "collect_wood", "code"),
            ("table", "achievement", "place_table", "rl"),
        ),
        code(GOOD_CODE.replace('count("wood") < 1', 'count("wood") < 2')),
        json.dumps({"code_actions": ["get_wood"], "episode_length": 100}),
    ]
    state, _ = run(
        "crafter:place_table",
        tmp_path,
        max_inner_loops=0,
        max_outer_loops=0,
        rl_timesteps=256,
        plan_revisions=0,
        env_step_budget=1,
    )
    # The code check alone spends the budget: no RL job starts, and the run says why.
    assert state["rl_runs"] == []
    assert any(e["kind"] == "budget_spent" for e in state["errors"])
    assert state["env_steps"]["code_check"] > 1
    assert state["env_steps"]["rl"] == 0


def test_malformed_answer_reaches_the_critic_as_an_error(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [
        "I think you should chop trees.",  # not JSON
        "{'sub_actions': oops",  # retry: still not JSON
        plan(("get_wood", "achievement", "collect_wood", "code")),
        code(GOOD_CODE),
    ]
    state, order = run("crafter:collect_wood", tmp_path, max_inner_loops=0)
    assert order.count("planner") == 2
    error = state["errors"][0]
    assert (error["node"], error["kind"]) == ("planner", "llm_invalid")
    assert state["verdicts"][0]["route"] == "planner"
    assert "llm_invalid" in state["verdicts"][0]["feedback"]
    assert state["evaluations"][-1]["task_success_rate"] >= 2 / 3


def test_plugins_switch_per_run(scripted: ScriptedChatModel, tmp_path: Path) -> None:
    scripted.answers = [plan(("get_wood", "achievement", "collect_wood", "code")), code(GOOD_CODE)]
    state, _ = run("crafter:collect_wood", tmp_path, **ONE_PASS)
    assert state["verdicts"][-1]["source"] == "rules"
    assert "critic" not in state["usage"]


def test_unknown_task_is_a_clear_error(tmp_path: Path) -> None:
    graph = builder.compile()
    with pytest.raises(
        ValueError, match=r"unknown task 'crafter:nope'; valid tasks: .*crafter:score"
    ):
        graph.invoke({"task": "crafter:nope"}, context=Context(runs_dir=str(tmp_path)))


def test_learning_method_d_counts_every_env_step_of_the_loop(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    from rlgpt.bench.learning import run_learning
    from rlgpt.bench.learning_config import LearningConfig

    scripted.answers = [
        plan(("get_wood", "achievement", "collect_wood", "code")),
        code(GOOD_CODE),
    ]
    config = LearningConfig(
        budget=5_000,
        seeds=[2],
        methods=["d"],
        graph_task="crafter:collect_wood",
        graph_context={**SCRIPTED_SETTINGS, "eval_episodes": 3},
    )
    (method,) = run_learning(config, tmp_path / "runs")["methods"]
    (run,) = method["runs"]
    parts = run["env_steps_by_part"]
    # The code check and the critic's evaluation both count; no RL job ran.
    assert parts["code_check"] > 0 and parts["evaluation"] > 0
    assert run["env_steps"] == sum(parts.values())
    assert run["episodes"] == len(run["episode_results"]) == 3
    assert run["achievements"]["collect_wood"] == 1.0
    # Run seed 2 trains on env seeds from 20,000 and is evaluated on held-out ones.
    assert run["context"]["seed"] == 20_000 and run["context"]["eval_seed"] == 25_000
    assert {e["seed"] for e in run["episode_results"]} == {25_000, 25_001, 25_002}
    # The finished run is kept: asking again reads it back instead of running the loop.
    again = run_learning(config, tmp_path / "runs")["methods"][0]["runs"][0]
    assert again["env_steps"] == run["env_steps"] and scripted.remaining == 0
