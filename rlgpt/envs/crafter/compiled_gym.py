"""One Crafter env on the compiled kernels, with everything `CrafterEnv` offers code actions.

`CompiledCrafterEnv` is a drop-in for `CrafterEnv` where code actions run (the options env
in an env worker): the same worlds, steps, rewards, observations and infos, and the same
accessors for the skill API (position, facing, inventory, the 9x7 layers, the map of seen
cells), read from the kernel's arrays instead of crafter's Python objects.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlgpt.envs.crafter.compiled import _KIND_SEMANTIC
from rlgpt.envs.crafter.compiled_env import CompiledCrafter
from rlgpt.envs.crafter.compiled_render import render_frame
from rlgpt.envs.crafter.config import CrafterConfig
from rlgpt.envs.crafter.constants import ACHIEVEMENTS, ACTIONS, ID_TO_NAME, NAME_TO_ID
from rlgpt.envs.crafter.env_views import CrafterViews
from rlgpt.envs.crafter.skills.memory import MemoryMap


class CompiledCrafterEnv(CrafterViews, gym.Env[np.ndarray, np.int64]):
    """`CrafterEnv` on the compiled kernels: one env, stepped one call at a time."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium API

    def __init__(
        self, config: CrafterConfig | None = None, render_mode: str | None = "rgb_array"
    ) -> None:
        """Build the env; raises UnknownTaskError for an unknown task."""
        self.config = config or CrafterConfig()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        self.render_mode = render_mode
        self.game = CompiledCrafter(self.config, 1)
        self.id_to_name: list[str] = list(ID_TO_NAME)
        self.name_to_id: dict[str, int] = dict(NAME_TO_ID)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        size = self.config.pixel_size
        self.observation_space: gym.spaces.Box
        if self.game.pixels:
            self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(0.0, 1.0, (self.game.obs_size,), np.float32)
        self._actions = np.zeros(1, np.int64)
        self._frame = np.zeros((size, size, 3), np.uint8)
        self._started = False
        self._seeded = False
        self._view_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._memory = MemoryMap(self.config.area)

    # ----------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: the world of `CrafterEnv.reset` with the same seed."""
        super().reset(seed=seed)
        if seed is None and not self._seeded:  # as CrafterEnv: a first seed from np_random
            seed = int(self.np_random.integers(0, 2**31 - 1))
        self._seeded = True
        obs = self.game.reset(0, seed).copy()
        self._started = True
        self._view_cache = None
        self._memory.reset()
        if self.config.skill_memory:
            self._update_memory()
        return obs, self._info(False)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step; terminated = death or solved task, truncated = time limit."""
        self._require_started()
        index = int(action)
        if not 0 <= index < len(ACTIONS):
            raise ValueError(f"action {action!r} outside 0..{len(ACTIONS) - 1}")
        game = self.game
        unlocked_before = game.state.unlocked[0].copy()
        self._actions[0] = index
        game.step(self._actions)
        self._view_cache = None
        if self.config.skill_memory:
            self._update_memory()
        terminated, truncated = bool(game.terminated[0]), bool(game.truncated[0])
        info = self._info(game.state.inv[0, 0] <= 0)
        new = np.flatnonzero(game.state.unlocked[0] & ~unlocked_before)
        info["new_achievements"] = sorted(ACHIEVEMENTS[a] for a in new)
        return game.obs[0].copy(), float(game.rewards[0]), terminated, truncated, info

    def render(self) -> np.ndarray:
        """A freshly drawn RGB frame, as `CrafterEnv.render` draws it (its own noise stream)."""
        self._require_started()
        game = self.game
        light = game.rules.daylight[min(int(game.state.steps[0]), self.config.episode_length)]
        render_frame(game.state, game.render, 0, light, self._frame)
        return self._frame.copy()

    def close(self) -> None:
        """Nothing to release."""

    # ---------------------------------------------------------------- accessors
    @property
    def player_pos(self) -> tuple[int, int]:
        """The player's world position `(x, y)`."""
        self._require_started()
        return self.game.player_pos(0)

    @property
    def facing(self) -> tuple[int, int]:
        """The direction `(dx, dy)` the player faces; `(0, -1)` is up."""
        self._require_started()
        s = self.game.state
        p = int(s.player[0])
        return int(s.fx[0, p]), int(s.fy[0, p])

    @property
    def inventory(self) -> dict[str, int]:
        """A copy of the inventory (includes health, food, drink and energy)."""
        self._require_started()
        return self.game.inventory(0)

    @property
    def achievements(self) -> dict[str, int]:
        """A copy of the achievement counters of this episode."""
        self._require_started()
        return self.game.achievements(0)

    @property
    def task_success(self) -> bool:
        """Whether the task was solved in this episode."""
        return bool(self.game.state.task_done[0])

    @property
    def sleeping(self) -> bool:
        """Whether the player sleeps (actions are ignored until it wakes)."""
        self._require_started()
        return bool(self.game.state.sleeping[0])

    @property
    def episode_steps(self) -> int:
        """Steps taken in the current episode."""
        return int(self.game.state.steps[0])

    def _region_layers(self, x0: int, x1: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.game.state
        mats = s.mat[0, x0:x1, y0:y1].astype(np.int16)
        objs = _KIND_SEMANTIC[s.kind[0][s.objmap[0, x0:x1, y0:y1]]].astype(np.int16)
        return mats, objs

    # ----------------------------------------------------------------- helpers
    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("call reset() before using the env")
