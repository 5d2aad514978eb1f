"""Plain-PPO Crafter envs as one SB3 VecEnv stepped by the compiled kernels.

`CompiledCrafterVecEnv` gives the observations (symbolic vectors or RGB frames), rewards
and episodes of a `FastDummyVecEnv` over the pipeline's options envs without library
actions (primitives only), env i seeded with `seed + i` as SB3 seeds: the same training
data, so the same trained weights. Its infos carry what training reads: the episode's
summary, inventory and achievements when an episode ends, SB3's `episode`,
`terminal_observation` and `TimeLimit.truncated`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from rlgpt.envs.crafter.compiled_env import CompiledCrafter
from rlgpt.envs.crafter.config import CrafterConfig
from rlgpt.envs.crafter.constants import ACTIONS


class CompiledCrafterVecEnv(VecEnv):
    """N Crafter envs (primitive actions) in one compiled step."""

    def __init__(self, config: CrafterConfig, n_envs: int) -> None:
        """Raises UnknownTaskError for an unknown task."""
        self.game = CompiledCrafter(config, n_envs)
        observation_space: gym.spaces.Box
        if self.game.pixels:
            size = config.pixel_size
            observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        else:
            observation_space = gym.spaces.Box(0.0, 1.0, (self.game.obs_size,), np.float32)
        super().__init__(n_envs, observation_space, gym.spaces.Discrete(len(ACTIONS)))
        self._actions = np.zeros(n_envs, np.int64)
        self._returns = np.zeros(n_envs, np.float64)
        self._lengths = np.zeros(n_envs, np.int64)
        self._started = [time.monotonic()] * n_envs

    def _reset_env(self, e: int, seed: int | None) -> np.ndarray:
        obs = self.game.reset(e, seed)
        self._returns[e], self._lengths[e] = 0.0, 0
        self._started[e] = time.monotonic()
        return obs

    def reset(self) -> VecEnvObs:
        """Start an episode in every env (with the seeds of `seed()`, once)."""
        for e in range(self.num_envs):
            self._reset_env(e, self._seeds[e])
            self.reset_infos[e] = {}
        self._reset_seeds()
        return self.game.obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        """Keep the actions for `step_wait`."""
        self._actions[:] = np.asarray(actions).reshape(-1)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every env; a finished env starts its next episode, as DummyVecEnv does."""
        game = self.game
        game.step(self._actions)
        rewards = game.rewards.astype(np.float32)
        terminated, truncated = game.terminated, game.truncated
        dones = terminated | truncated
        self._returns += game.rewards
        self._lengths += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            obs = game.obs.copy()
            for e in np.flatnonzero(dones).tolist():
                infos[e] = self._episode_end(e, obs[e], bool(truncated[e]))
                self._reset_env(e, None)
        for info, cut in zip(infos, (truncated & ~terminated).tolist(), strict=True):
            info["TimeLimit.truncated"] = cut
        return game.obs.copy(), rewards, dones, infos

    def _episode_end(self, e: int, last_obs: np.ndarray, truncated: bool) -> dict[str, Any]:
        game = self.game
        length = int(self._lengths[e])
        success = bool(game.state.task_done[e])
        return {
            "inventory": game.inventory(e),
            "achievements": game.achievements(e),
            "task_success": success,
            "terminal_observation": last_obs,
            "episode_summary": {
                "env_steps": length,
                "agent_steps": length,
                "return": float(self._returns[e]),
                "success": success,
            },
            "episode": {
                "r": float(self._returns[e]),
                "l": length,
                "t": round(time.monotonic() - self._started[e], 3),
            },
        }

    def close(self) -> None:
        """Nothing to release (the world helper is shared and stops with the process)."""

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Each env's current frame (pixel observation only; None otherwise)."""
        if self.game.pixels:
            return list(self.game.obs.copy())
        return [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attributes of the env: the spaces, `render_mode` and `action_masks` (MaskablePPO
        looks it up before asking for masks)."""
        value = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "render_mode": None,
            "action_masks": _all_actions,
        }
        if attr_name not in value:
            raise AttributeError(f"the compiled Crafter envs have no attribute {attr_name!r}")
        return [value[attr_name] for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Setting env attributes is not supported: the envs are arrays, not objects."""
        raise AttributeError(f"cannot set {attr_name!r} on the compiled Crafter envs")

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Only `action_masks` (all actions, always available) is supported."""
        if method_name == "action_masks":
            return [_all_actions() for _ in self._get_indices(indices)]
        raise AttributeError(f"the compiled Crafter envs have no method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """No gym wrappers here."""
        return [False for _ in self._get_indices(indices)]


def _all_actions() -> np.ndarray:
    """The action mask of an env of primitives: every action is always available."""
    return np.ones(len(ACTIONS), np.bool_)
