"""Helpers shared by the node plugins: plan access, library names, error records."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlgpt.envs.base import TaskSpec
from rlgpt.graph.context import Context
from rlgpt.graph.schemas import Plan, SubAction
from rlgpt.graph.state import ActionRecord, ErrorRecord, State, open_ended


def task_of(state: State) -> TaskSpec:
    """The run's task, as the start node resolved it."""
    return TaskSpec.model_validate(state["task_spec"])


def plan_of(state: State) -> Plan | None:
    """The current plan as a model, or None before the planner has produced one."""
    raw = state.get("plan")
    return Plan.model_validate(raw) if raw else None


def sub_action(plan: Plan, sub_id: str) -> SubAction:
    """The plan step with that id."""
    for step in plan.sub_actions:
        if step.id == sub_id:
            return step
    raise KeyError(f"plan has no sub-action {sub_id!r}")


def action_name(step: SubAction) -> str:
    """The library name of the action that carries out a step (policies get a suffix so a
    step that moves from `rl` to `code` on a re-plan never clashes with its old policy)."""
    return step.id if step.method == "code" else f"{step.id}_policy"


def executor_of(step: SubAction, library: Mapping[str, ActionRecord]) -> str | None:
    """The library action that carries out a plan step, if the coder/trainer produced one."""
    name = action_name(step)
    record = library.get(name)
    wanted = "code" if step.method == "code" else "policy"
    return name if record is not None and record["kind"] == wanted else None


def earlier_actions(plan: Plan, sub_id: str, library: Mapping[str, ActionRecord]) -> list[str]:
    """Library actions of the steps before `sub_id` (what runs before it, as its start state)."""
    names: list[str] = []
    for step in plan.sub_actions:
        if step.id == sub_id:
            break
        name = executor_of(step, library)
        if name is not None:
            names.append(name)
    return names


def library_dir(state: State) -> Path:
    """The run's action-library directory."""
    return Path(state["run_dir"]) / "library"


def error_record(
    node: str, kind: str, message: str, subaction: str | None = None, **detail: Any
) -> ErrorRecord:
    """A recoverable failure, as kept in the state for the critic and the report."""
    record = ErrorRecord(node=node, kind=kind, message=message[:2000])
    if subaction is not None:
        record["subaction"] = subaction
    if detail:
        record["detail"] = detail
    return record


def env_steps_left(state: State, ctx: Context, final: bool = False) -> int | None:
    """What is left of the run's env-step budget (None when the run has none).

    On an open-ended task with a final policy, `final_policy_share` of the budget is the
    final policy's: the loop's part ends that much earlier (`final=True` counts it).
    """
    if ctx.env_step_budget is None:
        return None
    budget = ctx.env_step_budget
    if not final and open_ended(state) and ctx.final_policy != "none":
        budget -= int(budget * ctx.final_policy_share)
    return budget - sum(state.get("env_steps", {}).values())
