"""Jobs as Ray tasks: one task per job, progress and stop requests through a small actor.

What travels per job: the function by reference, its arguments (a job description of a
few KB), progress events of ~300 bytes every `progress_every` env steps and the result
(paths and numbers). Policies, curves and logs are written by the job to its output folder,
which every node must see (shared storage on a real cluster).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rlgpt.execution.jobs import (
    ExecutorName,
    Job,
    JobNotStarted,
    JobOutcome,
    ProgressFn,
    StopFn,
    tagged,
)
from rlgpt.execution.ray_cluster import connect
from rlgpt.logging import get_logger

log = get_logger("rlgpt.execution.ray")

#: Seconds between two looks at the jobs, their progress and the stop signal.
POLL_SECONDS = 0.2
#: Seconds between two looks of a running job at the stop flag.
STOP_POLL_SECONDS = 0.5


class JobChannel:
    """An actor between the driver and its jobs: progress events up, the stop flag down."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.stop = False

    def ready(self) -> bool:
        """Answered once the actor is up (so no early event waits for its start)."""
        return True

    def report(self, event: dict[str, Any]) -> None:
        """Keep a job's event until the driver drains it."""
        self.events.append(event)

    def drain(self) -> list[dict[str, Any]]:
        """Every event kept since the last drain."""
        events, self.events = self.events, []
        return events

    def request_stop(self) -> None:
        """Ask every job of this run to stop."""
        self.stop = True

    def stop_requested(self) -> bool:
        """Whether the jobs were asked to stop."""
        return self.stop


def run_remote_job(job: Job, channel: Any) -> Any:
    """Inside a Ray worker: run `job`, its progress going to `channel`, its stop from there."""
    import ray

    node = ray.get_runtime_context().get_node_id()

    def report(event: dict[str, Any]) -> None:
        channel.report.remote({**event, "job": job.key, "node": node})

    polled = 0.0
    stopped = False

    def should_stop() -> bool:
        # Polled every agent step: ask the actor at most every STOP_POLL_SECONDS.
        nonlocal polled, stopped
        now = time.monotonic()
        if not stopped and now - polled >= STOP_POLL_SECONDS:
            polled = now
            try:
                stopped = bool(ray.get(channel.stop_requested.remote(), timeout=10))
            except Exception as exc:  # a lost driver must not end the training itself
                log.warning("stop_flag_unreadable", job=job.key, error=repr(exc))
        return stopped

    report({"event": "job_started"})
    return job.fn(*job.args, on_progress=report, should_stop=should_stop)


class RayExecutor:
    """Runs the jobs as Ray tasks, all at once; Ray schedules them by their `cpus`.

    A job whose worker or node is lost is started again elsewhere (up to `job.retries`
    times) and continues from what it saved. Once `should_stop` is True, the jobs are asked
    to stop and save; a job still running `stop_grace` seconds later is interrupted, and
    one still running after twice that has its worker process ended.
    """

    name: ExecutorName = "ray"

    def __init__(self, address: str = "", stop_grace: float = 60.0) -> None:
        self.address = address
        self.stop_grace = stop_grace

    def run(
        self,
        jobs: Sequence[Job],
        on_progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        on_result: Callable[[int, JobOutcome], object] | None = None,
    ) -> list[JobOutcome]:
        """Run every job as a Ray task (see `Executor.run`)."""
        if not jobs:
            return []
        if should_stop is not None and should_stop():
            return [
                JobOutcome(j.key, error=JobNotStarted("stopped before it started")) for j in jobs
            ]
        ray = connect(self.address)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        # On the driver's node: a lost worker node must not take the channel with it.
        channel = (
            ray.remote(JobChannel)
            .options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
            )
            .remote()
        )
        ray.get(channel.ready.remote())
        task = ray.remote(run_remote_job)
        started = time.monotonic()
        refs = [
            task.options(
                num_cpus=job.cpus,
                max_retries=job.retries,
                retry_exceptions=False,
                name=f"rlgpt:{job.key}",
            ).remote(job, channel)
            for job in jobs
        ]
        index = {ref: i for i, ref in enumerate(refs)}
        outcomes: list[JobOutcome | None] = [None] * len(jobs)
        nodes: dict[str, str] = {}
        reports = {job.key: tagged(on_progress, job.key) for job in jobs}

        def forward(events: list[dict[str, Any]]) -> None:
            for event in events:
                key = str(event.get("job"))
                nodes[key] = str(event.get("node", ""))
                report = reports.get(key)
                if report is not None:
                    report(event)

        pending = list(refs)
        stop_asked: float | None = None
        cancelled = 0  # 1: interrupted, 2: worker processes ended
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
                forward(ray.get(channel.drain.remote()))
                for ref in done:
                    i = index[ref]
                    outcome = _outcome(ray, jobs[i].key, ref, nodes.get(jobs[i].key, ""))
                    outcome.seconds = round(time.monotonic() - started, 3)
                    outcomes[i] = outcome
                    if on_result is not None:
                        on_result(i, outcome)
                if stop_asked is None and should_stop is not None and should_stop():
                    log.info("ray_jobs_stopping", jobs=len(pending))
                    ray.get(channel.request_stop.remote())
                    stop_asked = time.monotonic()
                waited = time.monotonic() - stop_asked if stop_asked is not None else 0.0
                if cancelled < 1 and waited > self.stop_grace:
                    # The jobs did not stop in time: interrupt them (their checkpoints stay).
                    for ref in pending:
                        ray.cancel(ref, force=False)
                    cancelled = 1
                elif cancelled < 2 and waited > 2 * self.stop_grace:
                    # Still running (the interrupt can be ignored): end their worker processes.
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    cancelled = 2
        except BaseException:
            # Interrupted here (Ctrl-C): the remote jobs must not train on unattended.
            ray.get(channel.request_stop.remote())
            for ref in pending:
                ray.cancel(ref, force=False)
            raise
        finally:
            ray.kill(channel)
        return [o for o in outcomes if o is not None]


def _outcome(ray: Any, key: str, ref: Any, node: str) -> JobOutcome:
    """The outcome of a finished task: its value, or the job's own error when it raised."""
    try:
        return JobOutcome(key, value=ray.get(ref), node=node)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        log.warning("job_failed", job=key, error=repr(cause))
        return JobOutcome(key, error=cause, node=node)
    except ray.exceptions.RayError as exc:  # lost past its retries, or cancelled
        log.warning("job_lost", job=key, error=repr(exc))
        return JobOutcome(key, error=exc, node=node)
