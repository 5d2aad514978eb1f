"""The local executor: jobs one after another, each failure its own, stop before the next."""

from __future__ import annotations

from typing import Any

import pytest

from rlgpt.execution import Job, JobNotStarted, JobOutcome, LocalExecutor, make_executor
from rlgpt.graph.context import Context
from rlgpt.graph.preflight import problems


def square(x: int, on_progress: Any = None, should_stop: Any = None) -> int:
    if on_progress is not None:
        on_progress({"event": "rl_progress", "env_steps": x})
    if x < 0:
        raise ValueError(f"no square of {x} today")
    return x * x


def test_jobs_run_in_order_and_a_failure_stays_with_its_job() -> None:
    events: list[dict[str, Any]] = []
    finished: list[tuple[int, JobOutcome]] = []
    outcomes = LocalExecutor().run(
        [Job("a", square, (2,)), Job("b", square, (-1,)), Job("c", square, (3,))],
        on_progress=events.append,
        on_result=lambda i, o: finished.append((i, o)),
    )
    assert [o.key for o in outcomes] == ["a", "b", "c"]
    assert [o.value for o in outcomes] == [4, None, 9]
    assert isinstance(outcomes[1].error, ValueError) and not outcomes[1].ok
    assert [i for i, _ in finished] == [0, 1, 2]
    # Every event names its job; each job announces where it runs.
    assert [(e["job"], e["event"]) for e in events] == [
        ("a", "job_started"), ("a", "rl_progress"), ("b", "job_started"), ("b", "rl_progress"),
        ("c", "job_started"), ("c", "rl_progress"),
    ]  # fmt: skip
    assert {e["node"] for e in events if e["event"] == "job_started"} == {"local"}


def test_a_stop_leaves_the_jobs_not_yet_started() -> None:
    calls: list[str] = []

    def stop_after_first() -> bool:
        return bool(calls)

    def listener(event: dict[str, Any]) -> None:
        calls.append(event["job"])

    outcomes = LocalExecutor().run(
        [Job("a", square, (2,)), Job("b", square, (3,))],
        on_progress=listener,
        should_stop=stop_after_first,
    )
    assert outcomes[0].value == 4
    assert isinstance(outcomes[1].error, JobNotStarted)


def test_a_broken_progress_listener_does_not_end_the_job() -> None:
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("display gone")

    (outcome,) = LocalExecutor().run([Job("a", square, (5,))], on_progress=broken)
    assert outcome.value == 25


def test_executor_names() -> None:
    assert make_executor("local").name == "local"
    with pytest.raises(ValueError, match="unknown executor 'slurm'; choose one of local, ray"):
        make_executor("slurm")
    with pytest.raises(ValueError, match="executor"):
        Context(executor="slurm")  # type: ignore[arg-type]


def test_ray_settings_pass_preflight_when_ray_is_installed() -> None:
    ctx = Context(executor="ray", planner_model="scripted:planner", coder_model="scripted:coder",
                  critic_model="scripted:critic")  # fmt: skip
    assert not [p for p in problems(ctx) if p.setting == "executor"]
