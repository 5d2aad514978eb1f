"""Where independent jobs (RL training, benchmark runs) run: in this process or on Ray."""

from rlgpt.execution.jobs import (
    EXECUTORS,
    Executor,
    ExecutorName,
    Job,
    JobNotStarted,
    JobOutcome,
    LocalExecutor,
    make_executor,
)

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorName",
    "Job",
    "JobNotStarted",
    "JobOutcome",
    "LocalExecutor",
    "make_executor",
]
