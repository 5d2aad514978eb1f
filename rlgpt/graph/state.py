"""Typed graph state: JSON-friendly records and the reducers that merge node updates."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

from typing_extensions import TypedDict

from rlgpt.actions.library import ActionRecord
from rlgpt.llm.usage import Usage, add_usage
from rlgpt.tools.rl_job import RLRunRecord

__all__ = [
    "ActionRecord",
    "CurriculumRound",
    "ErrorRecord",
    "EvaluationRecord",
    "FinalPolicyRecord",
    "InputState",
    "OutputState",
    "RLRunRecord",
    "State",
    "Usage",
    "VerdictRecord",
    "add_counts",
    "merge_dicts",
    "merge_usage",
    "open_ended",
]


class EvaluationRecord(TypedDict):
    """The critic's rollouts of the composed policy on held-out seeds."""

    iteration: int
    episodes: int
    seeds: list[int]
    task_success_rate: float
    subaction_success: dict[str, float]
    achievements: dict[str, float]
    score: float
    mean_length: float
    env_steps: NotRequired[int]
    failures: list[dict[str, Any]]
    episode_results: NotRequired[list[dict[str, Any]]]
    gif_path: NotRequired[str]


class VerdictRecord(TypedDict):
    """A routing decision and where it came from (model, rules, or an exhausted budget)."""

    route: Literal["coder", "planner", "end"]
    subaction_ids: list[str]
    feedback: str
    source: str


class CurriculumRound(TypedDict):
    """One planner round of an open-ended task's curriculum: what it kept and added, and why."""

    round: int
    kept: list[str]
    added: list[str]
    targets: list[str]
    missed: list[str]
    mastered: dict[str, float]


class FinalPolicyRecord(TypedDict):
    """The whole-game agent trained (or run, for code alone) after an open-ended task's loop."""

    mode: Literal["rl", "code"]
    action_names: list[str]
    env_steps: int
    episodes: int
    achievements: dict[str, float]
    score: float
    episode_results: list[dict[str, Any]]
    policy_path: NotRequired[str]
    curve_path: NotRequired[str]
    wall_time: float
    stopped_early: bool


class ErrorRecord(TypedDict):
    """A recoverable failure a node recorded instead of crashing the run."""

    node: str
    kind: str
    message: str
    subaction: NotRequired[str]
    detail: NotRequired[dict[str, Any]]


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later keys replace earlier ones."""
    return {**(left or {}), **(right or {})}


def add_counts(left: dict[str, int] | None, right: dict[str, int] | None) -> dict[str, int]:
    """Reducer: sums counts per key (env steps per part of the run)."""
    merged = dict(left or {})
    for key, count in (right or {}).items():
        merged[key] = merged.get(key, 0) + int(count)
    return merged


def merge_usage(left: dict[str, Usage] | None, right: dict[str, Usage] | None) -> dict[str, Usage]:
    """Reducer: sums calls, tokens and seconds per role."""
    merged: dict[str, Usage] = {k: Usage(**v) for k, v in (left or {}).items()}
    for role, usage in (right or {}).items():
        merged[role] = add_usage(merged[role], usage) if role in merged else Usage(**usage)
    return merged


class InputState(TypedDict):
    """What a run starts from."""

    task: str


class State(InputState, total=False):
    """The whole graph state. Large artefacts (policies, traces) live on disk; state holds paths."""

    run_id: str
    run_dir: str
    task_spec: dict[str, Any]
    plan: dict[str, Any] | None
    plan_history: Annotated[list[dict[str, Any]], operator.add]
    library: Annotated[dict[str, ActionRecord], merge_dicts]
    setups: Annotated[dict[str, dict[str, Any]], merge_dicts]
    todo: list[str]
    rl_runs: Annotated[list[RLRunRecord], operator.add]
    evaluations: Annotated[list[EvaluationRecord], operator.add]
    curriculum: Annotated[list[CurriculumRound], operator.add]
    final_policy: FinalPolicyRecord
    verdicts: Annotated[list[VerdictRecord], operator.add]
    errors: Annotated[list[ErrorRecord], operator.add]
    feedback: str
    inner_loops: int
    outer_loops: int
    usage: Annotated[dict[str, Usage], merge_usage]
    env_steps: Annotated[dict[str, int], add_counts]
    report_path: str


class OutputState(TypedDict, total=False):
    """What a finished run returns."""

    run_dir: str
    report_path: str
    plan: dict[str, Any] | None
    evaluations: list[EvaluationRecord]
    curriculum: list[CurriculumRound]
    final_policy: FinalPolicyRecord
    verdicts: list[VerdictRecord]
    errors: list[ErrorRecord]
    usage: dict[str, Usage]
    env_steps: dict[str, int]


def open_ended(state: State) -> bool:
    """True when the run's task has no single goal (a score over many achievements)."""
    return bool((state.get("task_spec") or {}).get("score"))
