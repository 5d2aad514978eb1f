"""Independent jobs and the executors that run them: one after another here, or as Ray tasks.

A job is a function called as `fn(*args, on_progress=..., should_stop=...)`. It reports
progress events through `on_progress`, polls `should_stop` and, to survive a lost worker,
continues from what it saved when it is started again on the same arguments (RL jobs resume
from their last checkpoint in their output folder). Both executors give the same outcomes
for the same jobs; only where and when the jobs run differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rlgpt.logging import get_logger

log = get_logger("rlgpt.execution")

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[ExecutorName, ...] = ("local", "ray")

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]


@dataclass(frozen=True)
class Job:
    """One independent unit of work and what it needs."""

    key: str
    """Names the job in progress events, logs and errors (unique within one `run`)."""
    fn: Callable[..., Any]
    """A module-level function (Ray ships it by reference): `fn(*args, on_progress=,
    should_stop=)`."""
    args: tuple[Any, ...] = ()
    """Picklable arguments; small (a job description), never policies or envs."""
    cpus: float = 1.0
    """Cores the job occupies while it runs (Ray schedules by this)."""
    retries: int = 2
    """Restarts after a lost worker or node (not after an error the job raised)."""


@dataclass
class JobOutcome:
    """What became of one job: its value, or the error that ended it."""

    key: str
    value: Any = None
    error: BaseException | None = None
    node: str = "local"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the job returned a value."""
        return self.error is None


class JobNotStarted(RuntimeError):
    """The run was asked to stop before this job started."""


class Executor(Protocol):
    """Runs independent jobs; the outcomes come back in the order of the jobs."""

    name: ExecutorName

    def run(
        self,
        jobs: Sequence[Job],
        on_progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        on_result: Callable[[int, JobOutcome], object] | None = None,
    ) -> list[JobOutcome]:
        """Run every job; a failed job is an outcome with an error, never an exception.

        Args:
            jobs: The jobs, independent of one another.
            on_progress: Gets each job's progress events (with `job` set to its key), in
                the calling thread.
            should_stop: Polled while jobs run; once True, running jobs are asked to stop
                (they keep what they saved) and jobs not started yet are not started.
            on_result: Called in the calling thread with (index, outcome) as each job ends.
        """
        ...


def tagged(on_progress: ProgressFn | None, key: str) -> ProgressFn | None:
    """`on_progress` with the job's key on every event; a broken listener never ends a job."""
    if on_progress is None:
        return None

    def report(event: dict[str, Any]) -> None:
        try:
            on_progress({**event, "job": key})
        except Exception as exc:
            log.warning("progress_listener_failed", job=key, error=repr(exc))

    return report


class LocalExecutor:
    """Runs the jobs one after another in this process (no extra dependency)."""

    name: ExecutorName = "local"

    def run(
        self,
        jobs: Sequence[Job],
        on_progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        on_result: Callable[[int, JobOutcome], object] | None = None,
    ) -> list[JobOutcome]:
        """Run every job in turn (see `Executor.run`)."""
        outcomes: list[JobOutcome] = []
        for index, job in enumerate(jobs):
            if should_stop is not None and should_stop():
                outcome = JobOutcome(job.key, error=JobNotStarted("stopped before it started"))
            else:
                report = tagged(on_progress, job.key)
                if report is not None:
                    report({"event": "job_started", "node": "local"})
                started = time.monotonic()
                try:
                    value = job.fn(*job.args, on_progress=report, should_stop=should_stop)
                    outcome = JobOutcome(job.key, value=value)
                except Exception as exc:  # one failed job must not lose the others
                    log.warning("job_failed", job=job.key, error=repr(exc))
                    outcome = JobOutcome(job.key, error=exc)
                outcome.seconds = round(time.monotonic() - started, 3)
            outcomes.append(outcome)
            if on_result is not None:
                on_result(index, outcome)
        return outcomes


def make_executor(name: str, ray_address: str = "") -> Executor:
    """The executor called `name`: `local`, or `ray` on the cluster at `ray_address` (empty:
    a local cluster on this machine, listening on loopback only)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from rlgpt.execution.ray_executor import RayExecutor

        return RayExecutor(address=ray_address)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
