"""Trained SB3 policies from the library as options: run until their predicate holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rlgpt.actions.library import ActionLibrary, LibraryEntry, LibraryError
from rlgpt.actions.option_result import OptionResult
from rlgpt.actions.policies import is_maskable, load_policy


class PolicyOptionsMixin:
    """The policy part of `OptionsEnv`: a policy picks actions of its own space until done."""

    # Set by OptionsEnv.__init__ and its step accounting.
    library: ActionLibrary | None
    max_depth: int
    policy_deterministic: bool
    noop_action: int
    _steps_acc: int
    _reward_acc: float
    _last_obs: Any
    _last_info: dict[str, Any]

    if TYPE_CHECKING:

        @property
        def episode_over(self) -> bool: ...

        def _entry(self, name: str) -> LibraryEntry: ...

        def _masks_for(self, names: Sequence[str]) -> np.ndarray: ...

        def _execute(
            self, index: int, names: Sequence[str], budget: int, depth: int
        ) -> OptionResult: ...

        def _env_step(self, action: int) -> None: ...

    def _run_policy(self, entry: LibraryEntry, budget: int, depth: int) -> OptionResult:
        start_steps, start_reward = self._steps_acc, self._reward_acc
        if depth >= self.max_depth:
            error = {
                "kind": "runtime",
                "message": f"policy actions nested deeper than {self.max_depth}",
                "line": None,
                "step": 0,
                "action": entry.name,
            }
            return OptionResult(entry.name, False, 0, 0.0, [error])
        if self.library is None:
            raise LibraryError("no library")
        model = load_policy(self.library.root / entry.path, entry.algo)
        names = list(entry.action_names)
        for name in names:
            self._entry(name)
        budget = max(1, min(budget, entry.max_steps))
        errors: list[dict[str, Any]] = []
        predicate = entry.predicate
        success = predicate is not None and predicate.holds(self._last_info)
        idle = 0
        while not success and not self.episode_over:
            spent = self._steps_acc - start_steps
            if spent >= budget:
                break
            kwargs: dict[str, Any] = {"deterministic": self.policy_deterministic}
            if is_maskable(model):
                kwargs["action_masks"] = self._masks_for(names)
            action, _ = model.predict(self._last_obs, **kwargs)
            result = self._execute(int(action), names, budget - spent, depth + 1)
            errors.extend(result.errors)
            # Guard against a policy looping on options that never step the env.
            idle = idle + 1 if result.env_steps == 0 else 0
            if idle >= 3:
                self._env_step(self.noop_action)
                idle = 0
            success = predicate is not None and predicate.holds(self._last_info)
        return OptionResult(
            name=entry.name,
            success=success,
            env_steps=self._steps_acc - start_steps,
            reward=self._reward_acc - start_reward,
            errors=errors,
            interrupted="episode_end" if self.episode_over and not success else None,
        )
