"""SB3 callbacks of a training job, one concern each: count, report, checkpoint, stop."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from rlgpt.logging import get_logger

log = get_logger("rlgpt.rl_pipeline")

ProgressFn = Callable[[dict[str, Any]], None]

#: Finished episodes the success rate and mean return are taken over.
RECENT_EPISODES = 20


def _next_multiple(value: int, every: int) -> int:
    return (value // every + 1) * every


class StepCounter(BaseCallback):
    """Counts env steps (a code action's every step), agent steps and errors, and records each
    finished episode; the other callbacks read these counts."""

    def __init__(self) -> None:
        super().__init__(verbose=0)
        self.env_steps = 0
        self.prelude_env_steps = 0
        self.agent_steps = 0
        self.code_action_errors = 0
        self.episodes: list[dict[str, Any]] = []
        self.resumes = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EPISODES)
        self._started = time.monotonic()
        self._steps_at_start = 0
        self._created = time.monotonic()
        #: Seconds of the interrupted attempts before this one (None: an older checkpoint
        #: did not record them).
        self.earlier_seconds: float | None = 0.0

    def _on_training_start(self) -> None:
        self._started = time.monotonic()
        self._steps_at_start = self.env_steps  # a resumed job counts only its own steps

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals.get("infos", [])
        for info in infos:
            self.agent_steps += 1
            self.env_steps += int(info.get("env_steps", 1))
            self.prelude_env_steps += int(info.get("prelude_env_steps", 0))
            if "code_action_error" in info:
                self.code_action_errors += 1
            summary = info.get("episode_summary")
            if summary is not None:
                self._record(summary, info)
        return True

    def _record(self, summary: dict[str, Any], info: dict[str, Any]) -> None:
        record = {
            "episode": len(self.episodes) + 1,
            "env_steps": self.env_steps,
            "length": int(summary["env_steps"]),
            "agent_steps": int(summary["agent_steps"]),
            "return": float(summary["return"]),
            "success": bool(summary["success"]),
            "achievements": sorted(
                n for n, c in info.get("achievements", {}).items() if int(c) > 0
            ),
        }
        self.episodes.append(record)
        self.recent.append(record)

    @property
    def budgeted_steps(self) -> int:
        """Every env step the job took: its agents' steps and the preludes' steps."""
        return self.env_steps + self.prelude_env_steps

    @property
    def training_rate(self) -> float:
        """Env steps per second since training (or this resumed attempt) started."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return (self.env_steps - self._steps_at_start) / elapsed

    @property
    def success_rate(self) -> float:
        """Success rate of the last finished episodes (0 when none finished)."""
        if not self.recent:
            return 0.0
        return sum(bool(e["success"]) for e in self.recent) / len(self.recent)

    @property
    def mean_return(self) -> float:
        """Mean return of the last finished episodes."""
        if not self.recent:
            return 0.0
        return sum(float(e["return"]) for e in self.recent) / len(self.recent)

    def counters(self) -> dict[str, Any]:
        """What a resumed job needs to continue counting where this one stopped."""
        return {
            "env_steps": self.env_steps,
            "prelude_env_steps": self.prelude_env_steps,
            "agent_steps": self.agent_steps,
            "code_action_errors": self.code_action_errors,
            "episodes": self.episodes,
            "resumes": self.resumes,
            "wall_time": self.total_seconds,
        }

    @property
    def total_seconds(self) -> float | None:
        """Seconds of this job over all its attempts (None when an earlier one is unknown)."""
        if self.earlier_seconds is None:
            return None
        return self.earlier_seconds + time.monotonic() - self._created

    def restore(self, counters: dict[str, Any]) -> None:
        """Continue from a checkpoint's counters."""
        self.env_steps = int(counters["env_steps"])
        self.prelude_env_steps = int(counters["prelude_env_steps"])
        self.agent_steps = int(counters["agent_steps"])
        self.code_action_errors = int(counters["code_action_errors"])
        self.episodes = list(counters["episodes"])
        self.resumes = int(counters.get("resumes", 0)) + 1
        earlier = counters.get("wall_time")
        self.earlier_seconds = float(earlier) if earlier is not None else None
        self.recent.extend(self.episodes[-RECENT_EPISODES:])


class EveryEnvSteps(BaseCallback):
    """Calls `_on_event()` whenever another `every` env steps have passed (SB3's own
    EveryNTimesteps counts agent steps, and a code action is one agent step of many)."""

    def __init__(self, counter: StepCounter, every: int) -> None:
        super().__init__(verbose=0)
        self.counter = counter
        self.every = every
        self._next = every

    def _on_training_start(self) -> None:
        self._next = _next_multiple(self.counter.env_steps, self.every)

    def _on_step(self) -> bool:
        if self.counter.env_steps >= self._next:
            self._on_event()
            self._next = _next_multiple(self.counter.env_steps, self.every)
        return True

    def _on_event(self) -> None:
        raise NotImplementedError


class ProgressReporter(EveryEnvSteps):
    """Logs an `rl_progress` event every `every` env steps and at the end, and hands it to
    `on_progress` (LangGraph's custom stream in a graph run)."""

    def __init__(
        self, counter: StepCounter, policy_name: str, budget: int, every: int,
        on_progress: ProgressFn | None = None,
    ) -> None:  # fmt: skip
        super().__init__(counter, every)
        self.policy_name = policy_name
        self.budget = budget
        self.on_progress = on_progress

    def _on_event(self) -> None:
        self.report()

    def _on_training_end(self) -> None:
        self.report(final=True)

    def progress(self, final: bool = False) -> dict[str, Any]:
        """The current progress event."""
        counter = self.counter
        return {
            "event": "rl_progress",
            "policy": self.policy_name,
            "env_steps": counter.env_steps,
            "prelude_env_steps": counter.prelude_env_steps,
            "agent_steps": counter.agent_steps,
            "budget": self.budget,
            "episodes": len(counter.episodes),
            "success_rate": round(counter.success_rate, 4),
            "mean_return": round(counter.mean_return, 4),
            "steps_per_second": round(counter.training_rate, 1),
            "code_action_errors": counter.code_action_errors,
            "final": final,
        }

    def report(self, final: bool = False) -> None:
        """Log the current progress and pass it on; a broken listener never ends training."""
        event = self.progress(final)
        log.info("rl_progress", **{k: v for k, v in event.items() if k != "event"})
        if self.on_progress is not None:
            try:
                self.on_progress(event)
            except Exception as exc:
                log.warning("progress_listener_failed", error=repr(exc))


class PeriodicCheckpoint(EveryEnvSteps):
    """Calls `save()` every `every` env steps, so a killed job resumes near where it was."""

    def __init__(self, counter: StepCounter, every: int, save: Callable[[], None]) -> None:
        super().__init__(counter, every)
        self.save = save

    def _on_event(self) -> None:
        self.save()


class StepBudget(BaseCallback):
    """Ends training once the env-step budget is spent (SB3 counts agent steps, and a code
    action is one agent step of many env steps); prelude steps count too."""

    def __init__(self, counter: StepCounter, budget: int) -> None:
        super().__init__(verbose=0)
        self.counter = counter
        self.budget = budget

    def _on_step(self) -> bool:
        return self.counter.budgeted_steps < self.budget


class StopSignal(BaseCallback):
    """Ends training when `should_stop()` turns true (a cancelled run, a node timeout)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        super().__init__(verbose=0)
        self.should_stop = should_stop
        self.stopped = False

    def _on_step(self) -> bool:
        if self.should_stop():
            self.stopped = True
            return False
        return True


class PhaseTimer(BaseCallback):
    """Where training time goes: rollout collection against PPO updates.

    SB3 alternates the two inside learn(): a rollout is collected between
    `on_rollout_start` and `on_rollout_end`, and the update runs after it. With the env
    stepping time of a `TimedVecEnv`, `phases` splits learn() into env stepping, the rest
    of collection (policy forward pass, rollout buffer, callbacks) and updates.
    """

    def __init__(self) -> None:
        super().__init__()
        self.collect_seconds = 0.0
        self.learn_seconds = 0.0
        self._rollout_started = 0.0
        self._learn_started = 0.0

    def _on_training_start(self) -> None:
        self._learn_started = time.perf_counter()

    def _on_rollout_start(self) -> None:
        self._rollout_started = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.collect_seconds += time.perf_counter() - self._rollout_started
        self._rollout_started = 0.0

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        now = time.perf_counter()
        if self._rollout_started:  # a callback stopped training inside a rollout
            self.collect_seconds += now - self._rollout_started
            self._rollout_started = 0.0
        self.learn_seconds += now - self._learn_started

    def phases(self, env_seconds: float, wall_seconds: float) -> dict[str, float]:
        """Seconds of env stepping, the rest of collection, updates and the rest of the job."""
        return {
            "env": round(env_seconds, 3),
            "policy": round(max(self.collect_seconds - env_seconds, 0.0), 3),
            "update": round(max(self.learn_seconds - self.collect_seconds, 0.0), 3),
            "other": round(max(wall_seconds - self.learn_seconds, 0.0), 3),
        }
