"""The critic's routing rules and the guard around a model's verdict."""

from __future__ import annotations

from typing import Any

from rlgpt.envs.base import Predicate
from rlgpt.graph.context import Context
from rlgpt.graph.schemas import Plan, SubAction, Verdict
from rlgpt.graph.state import EvaluationRecord, State
from rlgpt.nodes.critic import guard, rules_verdict

PLAN = Plan(
    sub_actions=[
        SubAction(
            id="get_wood",
            description="collect wood",
            predicate=Predicate(kind="inventory", name="wood", at_least=2),
            method="code",
        ),
        SubAction(
            id="table",
            description="place a table",
            predicate=Predicate(kind="achievement", name="place_table"),
            method="rl",
        ),
    ]
)


def _ev(
    task: float, steps: dict[str, float], failures: list[dict[str, Any]] | None = None
) -> EvaluationRecord:
    return EvaluationRecord(
        iteration=1,
        episodes=10,
        seeds=list(range(10)),
        task_success_rate=task,
        subaction_success=steps,
        achievements={},
        score=0.0,
        mean_length=100.0,
        failures=failures or [],
    )


def test_solved_task_ends() -> None:
    verdict = rules_verdict(
        State(task="crafter:place_table"),
        Context(),
        PLAN,
        _ev(0.9, {"get_wood": 1.0, "table": 0.9}),
    )
    assert verdict["route"] == "end"


def test_first_weak_step_goes_to_coder_with_its_error() -> None:
    failures = [
        {"subaction": "get_wood", "error": {"kind": "runtime", "message": "NameError", "line": 3}}
    ]
    verdict = rules_verdict(
        State(task="crafter:place_table"),
        Context(),
        PLAN,
        _ev(0.0, {"get_wood": 0.2, "table": 0.0}, failures),
    )
    assert verdict["route"] == "coder"
    assert verdict["subaction_ids"] == ["get_wood"]
    assert "runtime: NameError (line 3)" in verdict["feedback"]


def test_spent_inner_budget_goes_to_planner_then_ends() -> None:
    ctx = Context(max_inner_loops=1, max_outer_loops=1)
    ev = _ev(0.0, {"get_wood": 0.0, "table": 0.0})
    state = State(task="crafter:place_table", inner_loops=1, outer_loops=0)
    assert rules_verdict(state, ctx, PLAN, ev)["route"] == "planner"
    state = State(task="crafter:place_table", inner_loops=1, outer_loops=1)
    verdict = rules_verdict(state, ctx, PLAN, ev)
    assert (verdict["route"], verdict["source"]) == ("end", "budget")


def test_missing_plan_returns_to_planner_with_the_error() -> None:
    state = State(
        task="crafter:place_table",
        errors=[{"node": "planner", "kind": "llm_invalid", "message": "not JSON"}],
    )
    verdict = rules_verdict(state, Context(), None, None)
    assert verdict["route"] == "planner"
    assert "llm_invalid: not JSON" in verdict["feedback"]


def test_guard_keeps_model_within_budget_and_plan() -> None:
    ev = _ev(0.0, {"get_wood": 0.0, "table": 0.0})
    state = State(task="crafter:place_table", inner_loops=0, outer_loops=0)
    asked = Verdict(route="coder", subaction_ids=["nonexistent", "table"], feedback="fix table")
    verdict = guard(asked, state, Context(), PLAN, ev)
    assert (verdict["route"], verdict["subaction_ids"], verdict["source"]) == (
        "coder",
        ["table"],
        "llm",
    )
    spent = State(task="crafter:place_table", inner_loops=2, outer_loops=0)
    assert guard(asked, spent, Context(max_inner_loops=2), PLAN, ev)["route"] == "planner"
    solved = _ev(1.0, {"get_wood": 1.0, "table": 1.0})
    assert guard(Verdict(route="coder"), state, Context(), PLAN, solved)["route"] == "end"
    # A step that passed the evaluation is not sent back: the weak one is.
    table_weak = _ev(0.0, {"get_wood": 1.0, "table": 0.2})
    passed = Verdict(route="coder", subaction_ids=["get_wood"], feedback="fix wood")
    assert guard(passed, state, Context(), PLAN, table_weak)["subaction_ids"] == ["table"]


def test_guard_fixes_code_before_the_plan() -> None:
    ev = _ev(0.5, {"get_wood": 0.5, "table": 0.5})
    fresh = State(task="crafter:place_table", inner_loops=0, outer_loops=0)
    replan = Verdict(route="planner", feedback="start over")
    verdict = guard(replan, fresh, Context(), PLAN, ev)
    assert (verdict["route"], verdict["subaction_ids"]) == ("coder", ["get_wood"])
    assert verdict["feedback"].startswith("start over\nWhat the evaluation saw: task success 50%")
    # An early end also waits until the coder's budget is spent.
    assert guard(Verdict(route="end"), fresh, Context(), PLAN, ev)["route"] == "coder"
    spent = State(task="crafter:place_table", inner_loops=2, outer_loops=0)
    assert guard(replan, spent, Context(max_inner_loops=2), PLAN, ev)["route"] == "planner"
    assert (
        guard(Verdict(route="end"), spent, Context(max_inner_loops=2), PLAN, ev)["route"] == "end"
    )
