"""What `rlgpt run` shows while the graph runs: a live panel on a terminal, plain lines off one.

The panel is fed by the graph's stream (`tasks`, `updates` and `custom` modes) and shows the
current node, the model call in progress, each RL job's progress and the last verdict. Log
lines go through the same rich console (`rlgpt.logging`), so they print above the panel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from langgraph.types import StreamMode
from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

#: The modes `handle` understands; pass them to `graph.stream(..., stream_mode=...)`.
STREAM_MODES: list[StreamMode] = ["tasks", "updates", "custom"]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


@dataclass
class _ModelCall:
    role: str
    model: str
    prompt_tokens: int
    started: float = field(default_factory=time.monotonic)


class RunDisplay:
    """The live panel of one `rlgpt run` (a context manager); `live=False` prints only the
    critic's verdicts, one line each."""

    def __init__(self, console: Console, live: bool) -> None:
        self.console = console
        self.started = time.monotonic()
        self.node: str | None = None
        self.node_started = self.started
        self.call: _ModelCall | None = None
        self.last_call: dict[str, Any] | None = None
        self.jobs: dict[str, dict[str, Any]] = {}
        self.verdict: str | None = None
        self._live = Live(self, console=console, refresh_per_second=4) if live else None

    def __enter__(self) -> RunDisplay:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def handle(self, mode: str, chunk: Any) -> None:
        """Update from one streamed (mode, chunk) pair."""
        if mode == "tasks" and isinstance(chunk, dict):
            if "result" in chunk or "error" in chunk:  # the node's task ended
                if chunk.get("name") == self.node:
                    self.call = None
            else:
                self.node, self.node_started = str(chunk.get("name")), time.monotonic()
        elif mode == "updates" and isinstance(chunk, dict):
            for node, update in chunk.items():
                if node == "critic" and isinstance(update, dict) and update.get("verdicts"):
                    self._verdict(update)
        elif mode == "custom" and isinstance(chunk, dict):
            self._custom(chunk)

    def _verdict(self, update: dict[str, Any]) -> None:
        verdict = update["verdicts"][-1]
        ev = (update.get("evaluations") or [{}])[-1]
        self.verdict = (
            f"task success {ev.get('task_success_rate', 0):.0%} -> {verdict['route']} "
            f"({verdict['source']}): {verdict.get('feedback', '')}"
        )
        if self._live is None:
            self.console.print(f"critic: {self.verdict}", soft_wrap=True, markup=False)

    def _custom(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "llm_call_started":
            self.call = _ModelCall(
                role=str(event.get("role")),
                model=str(event.get("model")),
                prompt_tokens=int(event.get("prompt_tokens_estimate", 0)),
            )
        elif kind == "llm_call_finished":
            self.call = None
            self.last_call = event
        elif kind == "rl_progress":
            self.jobs[str(event.get("policy", "policy"))] = event
        elif kind == "play_progress":
            self.jobs["final agent (code actions)"] = event

    def __rich__(self) -> RenderableType:
        """The panel, rebuilt at each refresh (elapsed times move)."""
        now = time.monotonic()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold cyan", no_wrap=True, min_width=len("last call"))
        grid.add_column(overflow="ellipsis", no_wrap=True)
        node = self.node or "starting"
        grid.add_row("node", f"{node} · {_clock(now - self.node_started)}")
        if self.call is not None:
            grid.add_row(
                "model",
                f"{self.call.role} is answering ({self.call.model}) · "
                f"≈{self.call.prompt_tokens:,} prompt tokens · "
                f"{now - self.call.started:.0f} s",
            )
        if self.last_call is not None:
            c = self.last_call
            rate = c["output_tokens"] / c["seconds"] if c.get("seconds") else 0.0
            grid.add_row(
                "last call",
                f"{c['role']}: {c['input_tokens']:,} prompt + {c['output_tokens']:,} answer "
                f"tokens in {c['seconds']:.1f} s ({rate:.1f} tokens/s)",
            )
        for policy, job in self.jobs.items():
            # The budget counts the agent's steps and those its code actions took first.
            prelude = int(job.get("prelude_env_steps", 0))
            steps, budget = int(job.get("env_steps", 0)) + prelude, int(job.get("budget", 0))
            if job.get("event") == "play_progress":
                text = f"{policy} {steps:,}/{budget:,} env steps · {job['episodes']} episodes"
            else:
                text = (
                    f"{policy} {steps:,}/{budget:,} env steps · "
                    f"{job.get('steps_per_second', 0):,.0f} steps/s · "
                    f"success {job.get('success_rate', 0):.0%}"
                )
            if job.get("node"):  # a Ray task: which node trains it
                text += f" · node {str(job['node'])[:8]}"
            if job.get("final"):
                text += " · done"
            row = Table.grid(padding=(0, 1))
            row.add_row(
                ProgressBar(total=budget or None, completed=steps, width=24),
                Text(text, no_wrap=True, overflow="ellipsis"),
            )
            grid.add_row("RL", row)
        if self.verdict:
            grid.add_row("verdict", self.verdict)
        grid.add_row("elapsed", _clock(now - self.started))
        return grid
