"""The progress bars a long suite draws on stderr."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def suite_progress() -> Progress:
    """A progress bar on stderr: description, bar, done of total and time elapsed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def job_bars(progress: Progress) -> Callable[[dict[str, Any]], None]:
    """A progress listener drawing one bar per job: env steps of its budget, and its node."""
    bars: dict[str, TaskID] = {}

    def on_progress(event: dict[str, Any]) -> None:
        job = str(event.get("job", "job"))
        if job not in bars:
            bars[job] = progress.add_task(job, total=None)
        if event.get("event") == "job_started":
            node = str(event.get("node", ""))
            progress.update(bars[job], description=f"{job} on {node[:8]}")
        elif event.get("event") == "rl_progress":
            steps = int(event.get("env_steps", 0)) + int(event.get("prelude_env_steps", 0))
            progress.update(bars[job], completed=steps, total=int(event.get("budget", 0)) or None)

    return on_progress
