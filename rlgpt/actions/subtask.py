"""A sub-task's reward: its predicate, plus shaping, in place of the env's own reward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym

from rlgpt.envs.base import Predicate


class PredicateTask(gym.Wrapper[Any, Any, Any, Any]):
    """Sub-task reward: +1 and termination when a predicate first holds, plus optional shaping.

    The inner env's own reward is discarded, so a sub-task trains on its predicate, not on
    the env's own reward. Shaping pays `weight` per unit of an inventory item gained
    above its highest count so far in the episode. `info["task_success"]` is the predicate.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        predicate: Predicate,
        shaping: Sequence[tuple[str, float]] = (),
    ) -> None:
        super().__init__(env)
        self.predicate = predicate
        self.shaping = tuple(shaping)
        self._best: dict[str, int] = {}
        self._done = False

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        inventory = info.get("inventory", {})
        self._best = {item: int(inventory.get(item, 0)) for item, _ in self.shaping}
        self._done = self.predicate.holds(info)
        info["task_success"] = self._done
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        reward = 0.0
        inventory = info.get("inventory", {})
        for item, weight in self.shaping:
            count = int(inventory.get(item, 0))
            if count > self._best[item]:
                reward += weight * (count - self._best[item])
                self._best[item] = count
        if not self._done and self.predicate.holds(info):
            self._done = True
            reward += 1.0
        info["task_success"] = self._done
        if self._done:
            terminated = True
            truncated = False
        return obs, reward, terminated, truncated, info
