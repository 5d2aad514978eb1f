"""The environment-adapter protocol, task predicates and the skill-API description."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, Protocol, runtime_checkable

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field

from rlgpt import plugins


class UnknownTaskError(ValueError):
    """Raised for a task name the environment does not define; lists the valid ones."""

    def __init__(self, task: str, valid: list[str]) -> None:
        super().__init__(f"unknown task {task!r}; valid tasks: {', '.join(valid)}")
        self.task = task
        self.valid = valid


class Predicate(BaseModel):
    """A success condition checked on the env's `info` after every step.

    `achievement`: the named achievement has been unlocked this episode.
    `inventory`: the inventory holds at least `at_least` of `item`.
    """

    kind: Literal["achievement", "inventory"] = Field(
        description="What is checked: an unlocked achievement or an inventory count."
    )
    name: str = Field(description="Achievement name (kind=achievement) or item name (inventory).")
    at_least: int = Field(default=1, ge=1, le=99, description="Inventory count needed.")

    def holds(self, info: Mapping[str, Any]) -> bool:
        """True when the condition is met by a step's `info` dict."""
        if self.kind == "achievement":
            return int(info.get("achievements", {}).get(self.name, 0)) > 0
        return int(info.get("inventory", {}).get(self.name, 0)) >= self.at_least

    def covers(self, other: Predicate) -> bool:
        """True when this condition holding means `other` holds too."""
        same = (self.kind, self.name) == (other.kind, other.name)
        return same and self.at_least >= other.at_least

    def describe(self) -> str:
        """A short human-readable form, used in prompts and reports."""
        if self.kind == "achievement":
            return f"achievement {self.name} unlocked"
        return f"inventory {self.name} >= {self.at_least}"


class TaskSpec(BaseModel):
    """A named task: its success predicate(s) and whether it is the all-achievements score."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Task id, `<env>:<task>`.")
    env: str = Field(description="The env plugin that defines the task.")
    predicates: tuple[Predicate, ...] = Field(description="What must hold for success.")
    description: str = Field(description="One line for prompts and reports.")
    score: bool = Field(
        default=False, description="The open-ended task: as many achievements as possible."
    )

    def solved(self, info: Mapping[str, Any]) -> bool:
        """True when every predicate holds (never true for the open-ended score task)."""
        return not self.score and all(p.holds(info) for p in self.predicates)


class ShapingTerm(BaseModel):
    """A shaping bonus paid once per unit when an inventory item's count rises."""

    item: str = Field(description="Inventory item whose increase is rewarded.")
    weight: float = Field(default=0.1, ge=-1.0, le=1.0, description="Reward per unit gained.")


@dataclass(frozen=True)
class EnvSettings:
    """How an env is built for one use (training, a code check, an evaluation)."""

    observation: Literal["symbolic", "pixels"] = field(
        default="symbolic",
        metadata={"description": "'symbolic': the env's feature vector; 'pixels': RGB image."},
    )
    episode_length: int = field(
        default=10_000, metadata={"description": "Steps after which an episode is truncated."}
    )
    privileged: bool = field(
        default=False, metadata={"description": "Let skills read the full world map."}
    )
    terminate_on_success: bool = field(
        default=False, metadata={"description": "End the episode once the task is solved."}
    )
    shaping: tuple[tuple[str, float], ...] = field(
        default=(), metadata={"description": "(inventory item, reward per unit gained)."}
    )
    pixel_size: int = field(
        default=64, metadata={"description": "Side of the RGB observation / render, in pixels."}
    )
    prefetch_worlds: bool = field(
        default=False,
        metadata={"description": "Prepare the next episode's world in the background."},
    )
    compiled: bool = field(
        default=False,
        metadata={
            "description": "Build the plugin's compiled env where it has one (Crafter: the "
            "same dynamics, observations and skill accessors on the compiled kernels)."
        },
    )
    skill_memory: bool = field(
        default=True,
        metadata={
            "description": "Keep what skills read (e.g. the map of seen cells); off where no "
            "code action runs (plain RL), which saves its cost on every step."
        },
    )


@dataclass(frozen=True)
class SkillParam:
    """One parameter of a skill: its Python type name and, where finite, its allowed values."""

    name: str
    type: Literal["str", "int"]
    choices: tuple[str, ...] = ()
    default: str | int | None = None


@dataclass(frozen=True)
class SkillSpec:
    """The description of one skill-API method: used for prompts, grammars and static checks."""

    name: str
    params: tuple[SkillParam, ...]
    returns: Literal["bool", "int", "dict", "list", "tuple", "str", "None"]
    doc: str
    kind: Literal["perception", "navigation", "interaction"]
    steps_env: bool = field(default=False)


class OptionInterrupted(BaseException):
    """Raised inside a running code action when its episode ends or its step budget is spent.

    It derives from BaseException so that generated code cannot swallow it with
    `except Exception`.
    """

    def __init__(self, reason: Literal["episode_end", "step_budget", "time_budget"]) -> None:
        super().__init__(reason)
        self.reason = reason


class StepBudget:
    """The env steps one code-action call may take: each goes through `step` (or the env's
    own `step` when None, ending the call at the episode's end), and the one past
    `max_steps` raises OptionInterrupted. Skill APIs take every env step through it."""

    def __init__(self, env: Any, step: Callable[[int], Any] | None, max_steps: int) -> None:
        self._env = env
        self._step = step
        self.max_steps = int(max_steps)
        self.used = 0

    def take(self, action: int) -> None:
        """One env step of the call."""
        if self.used >= self.max_steps:
            raise OptionInterrupted("step_budget")
        self.used += 1
        if self._step is not None:
            self._step(action)
            return
        _, _, terminated, truncated, _ = self._env.step(action)
        if terminated or truncated:
            raise OptionInterrupted("episode_end")


@runtime_checkable
class EnvAdapter(Protocol):
    """What an environment plugin provides (entry point group `rlgpt.envs`).

    Worker processes (code checks, evaluations, env workers of RL training) load the plugin
    by name through its entry point, so a plugin registered only in-process
    (`rlgpt.plugins.envs.register`) serves the main process alone.

    Optional hooks, used when an adapter defines them:

    - `plan_problems(steps) -> (problems, counts)`: given a plan's (step id,
      done-predicate) pairs, what its rules say the plan lacks (the planner asks the model
      to revise the plan) and the checks its steps need where their counts are wrong,
      too few for what later steps use or more than the inventory holds (step id ->
      Predicate; the planner puts them in place).
    - `make_vec_env(task, settings, n_envs) -> VecEnv | None`: `n_envs` envs of the task
      stepped together (an SB3 VecEnv, env i seeded with `seed + i`) for plain RL on
      primitive actions, or None when these settings need the env of `make_env`. It must
      give the same episodes as `make_env`'s envs; the RL pipeline prefers it.
    - `make_env` may honour `EnvSettings.compiled` with a faster env of the same dynamics
      and accessors (Crafter: `CompiledCrafterEnv`); a plugin without one ignores it.
    - `unavailable() -> str | None`: why the env cannot run on this machine (a missing
      simulator), None when it can. A run whose env is unavailable records the reason as
      an error and goes straight to its report.
    """

    name: str

    def tasks(self) -> list[str]:
        """All task names, e.g. `crafter:collect_wood`."""
        ...

    def task(self, name: str) -> TaskSpec:
        """The task of that name; raises UnknownTaskError listing the valid names."""
        ...

    def primitive_actions(self) -> list[str]:
        """Names of the primitive actions, in the env's action-index order."""
        ...

    def make_env(self, task: TaskSpec, settings: EnvSettings) -> gym.Env[Any, Any]:
        """A Gymnasium env of `task` with a Discrete action space (the primitives).

        Its step `info` carries `inventory` and `achievements` mappings, which task
        predicates read. Its `render()` returns an RGB frame (the report's GIF).
        """
        ...

    def make_skill_api(self, env: Any, step: Callable[[int], Any] | None, max_steps: int) -> Any:
        """The object code actions call as `api`: it reads `env` (the innermost env) and steps
        it only through `step(action)` (None: `env.step`), within `max_steps`."""
        ...

    def achievements(self) -> list[str]:
        """Names of the achievements `info["achievements"]` reports (empty if none)."""
        ...

    def score(self, rates: Mapping[str, float]) -> float:
        """The env's one-number score of per-achievement success rates (0 if it has none)."""
        ...

    def manual(self) -> str:
        """A short game manual generated from the env's own rules (for the planner/coder)."""
        ...

    def skill_specs(self) -> list[SkillSpec]:
        """The skill API that code actions may call."""
        ...

    def vocabulary(self) -> dict[str, list[str]]:
        """Names code may mention, by kind.

        `achievements` and `items` (empty when the env has none) are the names plan
        predicates may use; any other kind (e.g. `targets`) gives the words a skill
        parameter named after it (`target`) may take when the skill spec lists no choices.
        """
        ...


@cache
def load_adapter(name: str) -> EnvAdapter:
    """The env plugin of that name (one instance per process)."""
    adapter = plugins.envs.load(name)()
    if not isinstance(adapter, EnvAdapter):
        raise TypeError(f"env plugin {name!r} does not implement EnvAdapter")
    return adapter


def unavailable_reason(adapter: EnvAdapter) -> str | None:
    """Why the adapter's env cannot run here (its optional `unavailable` hook), or None."""
    check = getattr(adapter, "unavailable", None)
    reason = check() if callable(check) else None
    return str(reason) if reason else None


def resolve_task(env: str, task: str) -> TaskSpec:
    """The task `task` of env plugin `env`; raises UnknownTaskError listing the valid ones."""
    return load_adapter(env).task(task)
