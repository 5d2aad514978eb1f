"""Typed graph state: JSON-friendly records and the reducers that merge node updates."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired, TypedDict


class ActionRecord(TypedDict):
    """An entry of the action library: a code action or a trained policy, stored on disk."""

    name: str
    kind: Literal["code", "policy"]
    path: str
    subaction: str
    description: str
    version: int
    check: NotRequired[dict[str, Any]]


class RLRunRecord(TypedDict):
    """One call of the RL pipeline tool."""

    subaction: str
    policy_path: str
    action_names: list[str]
    algo: str
    env_steps: int
    agent_steps: int
    wall_time: float
    steps_per_second: float
    train_success_rate: float
    stopped_early: bool
    curve_path: str
    tensorboard_dir: str


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
    failures: list[dict[str, Any]]
    gif_path: NotRequired[str]


class VerdictRecord(TypedDict):
    """A routing decision and where it came from (model, rules, or an exhausted budget)."""

    route: Literal["coder", "planner", "end"]
    subaction_ids: list[str]
    feedback: str
    source: str


class ErrorRecord(TypedDict):
    """A recoverable failure a node recorded instead of crashing the run."""

    node: str
    kind: str
    message: str
    subaction: NotRequired[str]
    detail: NotRequired[dict[str, Any]]


class Usage(TypedDict):
    """LLM calls and tokens of one role."""

    calls: int
    cached_calls: int
    input_tokens: int
    output_tokens: int
    seconds: float


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later keys replace earlier ones."""
    return {**(left or {}), **(right or {})}


def add_usage(left: dict[str, Usage] | None, right: dict[str, Usage] | None) -> dict[str, Usage]:
    """Reducer: sums calls, tokens and seconds per role."""
    merged: dict[str, Usage] = {k: Usage(**v) for k, v in (left or {}).items()}
    for role, usage in (right or {}).items():
        if role not in merged:
            merged[role] = Usage(**usage)
            continue
        current = merged[role]
        merged[role] = Usage(
            calls=current["calls"] + usage["calls"],
            cached_calls=current["cached_calls"] + usage["cached_calls"],
            input_tokens=current["input_tokens"] + usage["input_tokens"],
            output_tokens=current["output_tokens"] + usage["output_tokens"],
            seconds=current["seconds"] + usage["seconds"],
        )
    return merged


class InputState(TypedDict):
    """What a run starts from."""

    task: str


class State(InputState, total=False):
    """The whole graph state. Large artefacts (policies, traces) live on disk; state holds paths."""

    run_id: str
    run_dir: str
    plan: dict[str, Any] | None
    plan_history: Annotated[list[dict[str, Any]], operator.add]
    library: Annotated[dict[str, ActionRecord], merge_dicts]
    setups: Annotated[dict[str, dict[str, Any]], merge_dicts]
    todo: list[str]
    rl_runs: Annotated[list[RLRunRecord], operator.add]
    evaluations: Annotated[list[EvaluationRecord], operator.add]
    verdicts: Annotated[list[VerdictRecord], operator.add]
    errors: Annotated[list[ErrorRecord], operator.add]
    feedback: str
    inner_loops: int
    outer_loops: int
    usage: Annotated[dict[str, Usage], add_usage]
    report_path: str


class OutputState(TypedDict, total=False):
    """What a finished run returns."""

    run_dir: str
    report_path: str
    plan: dict[str, Any] | None
    evaluations: list[EvaluationRecord]
    verdicts: list[VerdictRecord]
    errors: list[ErrorRecord]
    usage: dict[str, Usage]
