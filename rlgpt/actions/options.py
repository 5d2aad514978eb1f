"""Options wrapper: primitives plus library actions (code actions, policies) as one space."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rlgpt.actions.code_options import CodeOptionsMixin
from rlgpt.actions.library import ActionLibrary, LibraryEntry, LibraryError
from rlgpt.actions.option_result import OptionResult
from rlgpt.actions.policy_options import PolicyOptionsMixin
from rlgpt.actions.sandbox import CodeAction, CodeActionRejected, SandboxLimits
from rlgpt.envs.base import EnvAdapter, OptionInterrupted, Predicate
from rlgpt.logging import get_logger

log = get_logger("rlgpt.options")


class OptionsEnv(CodeOptionsMixin, PolicyOptionsMixin, gym.Wrapper[Any, np.int64, Any, Any]):
    """`Discrete(n_primitives + n_library_actions)`: a library action runs as an option.

    A code action runs once in the sandbox, stepping the inner env through the skill API; a
    policy action runs its SB3 policy (whose own action space may hold further library
    actions) until its predicate holds or its step budget is spent. The agent step returns
    the last observation, the summed reward and `info["env_steps"]`. A code-action error
    ends the option as a failure and is reported in `info["code_action_error"]`; it never
    crashes the env. A limit breach (timeout, cpu, memory, recursion) also ends the episode
    (truncated), since the call was cut at an arbitrary point. In an env worker process the
    sandbox's rlimits and CPU stops are applied before code first runs. An option that takes
    no env step is followed by one noop, so every agent step advances the episode.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        library: ActionLibrary | str | Path | None = None,
        action_names: Sequence[str] = (),
        *,
        adapter: EnvAdapter,
        limits: SandboxLimits | None = None,
        prelude: Sequence[str] = (),
        skill_names: Sequence[str] | None = None,
        skill_env: Any = None,
        policy_deterministic: bool = False,
        max_depth: int = 3,
        noop_action: int = 0,
    ) -> None:
        """Wrap an env.

        Args:
            env: The inner env, built by `adapter` (possibly under PredicateTask).
            library: The action library (or its root) holding `action_names` and `prelude`.
            action_names: Library actions appended after the primitives.
            adapter: The env plugin: primitive names, skill specs and the skill API.
            limits: Sandbox limits of code-action calls.
            prelude: Library actions run after every reset (not agent steps).
            skill_names: Skill-API names code may call; the adapter's when None.
            skill_env: The object the skill API reads; the innermost env when None.
            policy_deterministic: Policy actions pick the most likely action.
            max_depth: Deepest nesting of policy actions calling library actions.
            noop_action: Primitive index used when an option took no env step.
        """
        super().__init__(env)
        self.adapter = adapter
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise TypeError("OptionsEnv needs an inner env with a Discrete action space")
        self.n_primitives = int(env.action_space.n)
        self.library = (
            library
            if isinstance(library, ActionLibrary) or library is None
            else ActionLibrary(library)
        )
        needed = [*action_names, *prelude]
        if needed and self.library is None:
            raise LibraryError("library actions were requested but no library was given")
        self.entries: dict[str, LibraryEntry] = {}
        for name in needed:
            self._entry(name)
        self.action_names = list(action_names)
        self.prelude = list(prelude)
        self.limits = limits or SandboxLimits()
        self._skill_names = list(skill_names) if skill_names is not None else None
        self._skill_env = skill_env
        self.policy_deterministic = policy_deterministic
        self.max_depth = max_depth
        self.noop_action = noop_action
        self.n_actions = self.n_primitives + len(self.action_names)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.primitive_names = self._primitive_names()
        self._last_obs: Any = None
        self._last_info: dict[str, Any] = {}
        self._terminated = False
        self._truncated = False
        self._reward_acc = 0.0
        self._steps_acc = 0
        self._episode_steps = 0
        self._episode_agent_steps = 0
        self._episode_return = 0.0
        self._episode_start = time.monotonic()
        self._pending_prelude_steps = 0
        self._limits_by_budget: dict[int, SandboxLimits] = {}
        self._loaded: dict[str, tuple[LibraryEntry, CodeAction | CodeActionRejected]] = {}
        self._worker_checked = False
        self.frame_hook: Callable[[], None] | None = None

    # ----------------------------------------------------------------- helpers
    def _primitive_names(self) -> list[str]:
        primitives = self.adapter.primitive_actions()
        if len(primitives) != self.n_primitives:
            raise ValueError(
                f"env plugin {self.adapter.name!r} names {len(primitives)} primitive actions, "
                f"its env has {self.n_primitives}"
            )
        return primitives

    @property
    def all_action_names(self) -> list[str]:
        """Names of every action in index order: primitives, then library actions."""
        return [*self.primitive_names, *self.action_names]

    def _entry(self, name: str) -> LibraryEntry:
        if name not in self.entries:
            if self.library is None:
                raise LibraryError(f"no library to look up {name!r}")
            self.entries[name] = self.library.get(name)
        return self.entries[name]

    def _api_env(self) -> Any:
        return self._skill_env if self._skill_env is not None else self.env.unwrapped

    def _env_step(self, action: int) -> None:
        """One real env step; every step of every option goes through here."""
        obs, reward, terminated, truncated, info = self.env.step(np.int64(action))
        self._last_obs, self._last_info = obs, info
        self._terminated, self._truncated = bool(terminated), bool(truncated)
        self._reward_acc += float(reward)
        self._steps_acc += 1
        if self.frame_hook is not None:
            self.frame_hook()

    @property
    def episode_over(self) -> bool:
        """The last env step ended the episode."""
        return self._terminated or self._truncated

    @property
    def last_info(self) -> dict[str, Any]:
        """Info of the last env step (or of the reset)."""
        return self._last_info

    @property
    def last_obs(self) -> Any:
        """Observation after the last env step (or the reset)."""
        return self._last_obs

    # ------------------------------------------------------------- execution
    def _budgeted_step(self, budget: int) -> tuple[Callable[[int], Any], Callable[[], int]]:
        """A step callback for one call: raises OptionInterrupted at episode end or budget."""
        start = self._steps_acc

        def used() -> int:
            return self._steps_acc - start

        def step(action: int) -> Any:
            if self.episode_over:
                raise OptionInterrupted("episode_end")
            if used() >= budget:
                raise OptionInterrupted("step_budget")
            action = int(action)
            if not 0 <= action < self.n_primitives:
                raise ValueError(f"primitive action index out of range: {action}")
            self._env_step(action)
            if self.episode_over:
                raise OptionInterrupted("episode_end")
            return self._last_obs, self._last_info

        return step, used

    def _masks_for(self, names: Sequence[str]) -> np.ndarray:
        masks = np.ones(self.n_primitives + len(names), dtype=bool)
        for i, name in enumerate(names):
            masks[self.n_primitives + i] = self._is_available(name)
        return masks

    def _execute(self, index: int, names: Sequence[str], budget: int, depth: int) -> OptionResult:
        """Execute action `index` of a space made of the primitives plus `names`."""
        if index < self.n_primitives:
            start = self._reward_acc
            if self.episode_over or budget <= 0:
                return OptionResult(self.primitive_names[index], False, 0, 0.0)
            self._env_step(index)
            return OptionResult(self.primitive_names[index], True, 1, self._reward_acc - start)
        return self.run_library_action(names[index - self.n_primitives], budget, depth)

    def run_library_action(
        self, name: str, budget: int | None = None, depth: int = 0
    ) -> OptionResult:
        """Run one library action (or a primitive by name) as an option from the current state.

        Args:
            name: Library action name (or a primitive's name when no library action has it).
            budget: Env steps it may take; the action's own `max_steps` when None.
            depth: Nesting depth (policies calling library actions).
        """
        in_library = name in self.entries or (self.library is not None and name in self.library)
        if not in_library and name in self.primitive_names:
            return self._execute(self.primitive_names.index(name), [], budget or 1, depth)
        entry = self._entry(name)
        limit = entry.max_steps if budget is None else budget
        if entry.kind == "code":
            return self._run_code(entry, limit)
        return self._run_policy(entry, limit, depth)

    def run_until(self, name: str, predicate: Predicate | None, max_steps: int) -> dict[str, Any]:
        """Call an action repeatedly until the predicate holds, the budget or episode ends.

        A code action that returns without the predicate holding is called again while it
        keeps making progress; an error ends the attempt. Used by preludes and evaluation.

        Returns:
            Dict with success, env_steps, calls, errors, and of the last call what it
            returned (`returned`), its env steps (`last_steps`) and skill calls (`trace`).
        """
        start = self._steps_acc
        errors: list[dict[str, Any]] = []
        calls = 0
        result: OptionResult | None = None
        holds = predicate is not None and predicate.holds(self._last_info)
        while not holds and not self.episode_over:
            remaining = max_steps - (self._steps_acc - start)
            if remaining <= 0:
                break
            result = self.run_library_action(name, remaining)
            calls += 1
            errors.extend(result.errors)
            if predicate is None:
                holds = result.success
                break
            holds = predicate.holds(self._last_info)
            if result.errors or result.env_steps == 0:
                break
        return {
            "action": name,
            "success": bool(holds),
            "env_steps": self._steps_acc - start,
            "calls": calls,
            "errors": errors,
            "returned": None if result is None else result.success,
            "last_steps": 0 if result is None else result.env_steps,
            "trace": [] if result is None else result.trace,
        }

    # ---------------------------------------------------------------- gym API
    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the inner env and run the prelude (re-resetting if it ends the episode)."""
        prelude_report: list[dict[str, Any]] = []
        for _attempt in range(3):
            obs, info = self.env.reset(**kwargs)
            self._last_obs, self._last_info = obs, info
            self._terminated = self._truncated = False
            self._reward_acc, self._steps_acc = 0.0, 0
            prelude_report = []
            for name in self.prelude:
                entry = self._entry(name)
                prelude_report.append(self.run_until(name, entry.predicate, entry.max_steps))
                if self.episode_over:
                    break
            if not self.episode_over:
                break
            kwargs.pop("seed", None)
        self._pending_prelude_steps = self._steps_acc
        self._episode_steps = 0
        self._episode_agent_steps = 0
        self._episode_return = 0.0
        self._episode_start = time.monotonic()
        info = dict(self._last_info)
        if self.prelude:
            info["prelude"] = prelude_report
            info["prelude_env_steps"] = self._pending_prelude_steps
        return self._last_obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """One agent step: a primitive, or a whole option."""
        index = int(action)
        if not 0 <= index < self.n_actions:
            raise ValueError(f"action {index} outside Discrete({self.n_actions})")
        self._reward_acc, self._steps_acc = 0.0, 0
        extra: dict[str, Any] = {}
        if index < self.n_primitives:
            self._env_step(index)
            name = self.primitive_names[index]
        else:
            name = self.action_names[index - self.n_primitives]
            result = self.run_library_action(name, None, 0)
            extra["option_success"] = result.success
            if result.errors:
                extra["code_action_error"] = result.errors[0]
                if len(result.errors) > 1:
                    extra["code_action_errors"] = result.errors
            if self._steps_acc == 0 and not self.episode_over:
                self._env_step(self.noop_action)
        info = dict(self._last_info)
        info.update(extra)
        info["option"] = name
        info["env_steps"] = self._steps_acc
        if self._pending_prelude_steps:
            info["prelude_env_steps"] = self._pending_prelude_steps
            self._pending_prelude_steps = 0
        self._episode_steps += self._steps_acc
        self._episode_agent_steps += 1
        self._episode_return += self._reward_acc
        if self.episode_over:
            summary = {
                "env_steps": self._episode_steps,
                "agent_steps": self._episode_agent_steps,
                "return": self._episode_return,
                "success": bool(info.get("task_success", False)),
            }
            info["episode_summary"] = summary
            # SB3 reads `episode` into its ep_info_buffer for rollout/ep_rew_mean.
            info["episode"] = {
                "r": self._episode_return,
                "l": self._episode_agent_steps,
                "t": round(time.monotonic() - self._episode_start, 3),
            }
        return self._last_obs, self._reward_acc, self._terminated, self._truncated, info

    def action_masks(self) -> np.ndarray:
        """MaskablePPO masks: primitives always; code actions by their `available(api)`."""
        return self._masks_for(self.action_names)
