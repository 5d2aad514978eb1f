"""Crafter as a Gymnasium env with symbolic observations, task rewards and a skill-API adapter."""

from __future__ import annotations

from typing import Any

import crafter
import gymnasium as gym
import numpy as np
from crafter import objects

from rlgpt.envs.crafter.balance import balance_chunk
from rlgpt.envs.crafter.config import CrafterConfig
from rlgpt.envs.crafter.constants import (
    ACTIONS,
    DIRECTIONS,
    ID_TO_NAME,
    ITEMS,
    MATERIALS,
    NAME_TO_ID,
    OBJECT_IDS,
    VIEW,
)
from rlgpt.envs.crafter.env_views import CrafterViews
from rlgpt.envs.crafter.prefetch import NextWorld, replay_recipe, start_world
from rlgpt.envs.crafter.skills.memory import MemoryMap
from rlgpt.envs.crafter.tasks import get_task
from rlgpt.envs.crafter.worldgen import generate_world


class CrafterEnv(CrafterViews, gym.Env[np.ndarray, np.int64]):
    """Crafter with a cheap step: no rendering unless pixels are observed or `render()` is called.

    The step logic follows `crafter.Env.step` (object updates near the player, chunk
    balancing every 10 steps, native reward) on crafter's own World and objects. Rendering
    uses its own random stream, so rendering never changes the world's dynamics.
    Positions are world coordinates `(x, y)`; arrays over the world are indexed `[x, y]`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium API

    def __init__(
        self, config: CrafterConfig | None = None, render_mode: str | None = "rgb_array"
    ) -> None:
        """Build the env; raises UnknownTaskError for an unknown task."""
        self.config = config or CrafterConfig()
        self.task = get_task(self.config.task)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        self.render_mode = render_mode
        size = (self.config.pixel_size, self.config.pixel_size)
        self._game = crafter.Env(
            area=self.config.area, view=(9, 9), size=size, length=self.config.episode_length
        )
        self._world = self._game._world
        if [self._world._mat_names[i] for i in range(1, len(MATERIALS) + 1)] != MATERIALS:
            raise RuntimeError("crafter's material ids differ from the ones this env expects")
        self.id_to_name: list[str] = list(ID_TO_NAME)
        self.name_to_id: dict[str, int] = dict(NAME_TO_ID)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self._n_channels = len(ID_TO_NAME) - 1
        if self.config.observation == "pixels":
            self.observation_space = gym.spaces.Box(0, 255, (*size, 3), np.uint8)
        else:
            n = VIEW[0] * VIEW[1] * self._n_channels + len(ITEMS) + len(DIRECTIONS)
            self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        self._seed: int | None = None
        self._episode = 0
        self._player: objects.Player | None = None
        self._render_rng = np.random.RandomState(0)
        self._steps = 0
        self._last_health = 0
        self._unlocked: set[str] = set()
        self._task_done = False
        self._shaping_max: dict[str, int] = {}
        self._view_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._next_world = NextWorld(self.area)
        self._memory = MemoryMap(self.area)

    # ----------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; the world follows from (seed, episode index) as in crafter.

        `reset(seed=s)` builds the same world as `crafter.Env(seed=s).reset()`; later
        resets without a seed continue that seed's sequence of worlds.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._seed, self._episode = int(seed), 0
        elif self._seed is None:
            self._seed = int(self.np_random.integers(0, 2**31 - 1))
        self._episode += 1
        world = self._world
        world_seed = _world_seed(self._seed, self._episode)
        recipe = self._next_world.take(world_seed)
        player = start_world(world, world_seed)
        if recipe is not None:
            replay_recipe(world, player, recipe)
        else:
            generate_world(world, player)
        if self.config.prefetch_worlds:
            self._next_world.request(_world_seed(self._seed, self._episode + 1))
        self._steps = 0
        self._game._step = 0
        self._game._update_time()
        self._player = player
        self._game._player = player
        self._last_health = player.health
        self._unlocked = set()
        self._task_done = False
        self._shaping_max = {item: int(player.inventory[item]) for item, _ in self.config.shaping}
        self._render_rng = np.random.RandomState(self._seed % (2**31 - 1))
        self._view_cache = None
        self._memory.reset()
        if self.config.skill_memory:
            self._update_memory()
        return self._obs(), self._info(False)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step; terminated = death or solved task, truncated = time limit."""
        player = self._require_player()
        index = int(action)
        if not 0 <= index < len(ACTIONS):
            raise ValueError(f"action {action!r} outside 0..{len(ACTIONS) - 1}")
        self._steps += 1
        self._game._step = self._steps
        self._game._update_time()
        player.action = ACTIONS[index]
        reach = 2 * 9  # crafter updates objects within 2 * max(view) of the player
        # Only the player's own update moves the player, so its position is read once
        # before the loop and again after that update (crafter's order is kept).
        px, py = player.pos.tolist()
        for obj in self._world.objects:
            if obj is player:
                obj.update()
                px, py = player.pos.tolist()
                continue
            ox, oy = obj.pos.tolist()
            if abs(ox - px) + abs(oy - py) < reach:
                obj.update()
        if self._steps % 10 == 0:
            for chunk, objs in self._world.chunks.items():
                balance_chunk(self._world, player, chunk, objs)
        self._view_cache = None
        health = player.health
        native = (health - self._last_health) / 10
        self._last_health = health
        new = {n for n, c in player.achievements.items() if c > 0 and n not in self._unlocked}
        if new:
            self._unlocked |= new
            native += 1.0
        if self.task.score:
            reward = float(native)
            solved = False
        else:
            reward = 0.0
            if not self._task_done and self.task.solved({"achievements": player.achievements}):
                self._task_done = True
                reward += 1.0
            solved = self._task_done
            for item, weight in self.config.shaping:
                count = int(player.inventory[item])
                if count > self._shaping_max[item]:
                    reward += weight * (count - self._shaping_max[item])
                    self._shaping_max[item] = count
        dead = player.health <= 0
        terminated = bool(dead or (solved and self.config.terminate_on_success))
        truncated = bool(not terminated and self._steps >= self.config.episode_length)
        if self.config.skill_memory:
            self._update_memory()
        info = self._info(dead)
        info["new_achievements"] = sorted(new)
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        """The RGB frame crafter shows (local view + inventory), `(pixel_size, pixel_size, 3)`."""
        self._require_player()
        world = self._world
        # crafter's night noise draws from the world's random stream; give it a private one
        # so that rendering (or not) leaves the world's dynamics unchanged.
        saved, world.random = world.random, self._render_rng
        try:
            frame = self._game.render()
        finally:
            world.random = saved
        return np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        """Nothing to release."""

    # ---------------------------------------------------------------- accessors
    @property
    def player(self) -> objects.Player:
        """The underlying crafter Player object (for tests and diagnostics)."""
        return self._require_player()

    @property
    def player_pos(self) -> tuple[int, int]:
        """The player's world position `(x, y)`."""
        pos = self._require_player().pos
        return int(pos[0]), int(pos[1])

    @property
    def facing(self) -> tuple[int, int]:
        """The direction `(dx, dy)` the player faces; `(0, -1)` is up."""
        f = self._require_player().facing
        return int(f[0]), int(f[1])

    @property
    def inventory(self) -> dict[str, int]:
        """A copy of the inventory (includes health, food, drink and energy)."""
        return {k: int(v) for k, v in self._require_player().inventory.items()}

    @property
    def achievements(self) -> dict[str, int]:
        """A copy of the achievement counters of this episode."""
        return {k: int(v) for k, v in self._require_player().achievements.items()}

    @property
    def task_success(self) -> bool:
        """Whether the task was solved in this episode."""
        return self._task_done

    @property
    def sleeping(self) -> bool:
        """Whether the player sleeps (actions are ignored until it wakes)."""
        return bool(self._require_player().sleeping)

    @property
    def episode_steps(self) -> int:
        """Steps taken in the current episode."""
        return self._steps

    def _region_layers(self, x0: int, x1: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        mats = self._world._mat_map[x0:x1, y0:y1].astype(np.int16)
        objs = np.zeros_like(mats)
        region = self._world._obj_map[x0:x1, y0:y1]
        all_objects = self._world._objects
        for i, j in zip(*np.nonzero(region), strict=True):
            objs[i, j] = OBJECT_IDS.get(type(all_objects[region[i, j]]), 0)
        return mats, objs

    # ----------------------------------------------------------------- helpers
    def _require_player(self) -> objects.Player:
        if self._player is None:
            raise RuntimeError("call reset() before using the env")
        return self._player

    def _require_started(self) -> None:
        self._require_player()

    def _obs(self) -> np.ndarray:
        if self.config.observation == "pixels":
            return self.render()
        player = self._require_player()
        ids = self.local_view().reshape(-1)
        n_cells = ids.size
        grid = np.zeros((n_cells, self._n_channels), np.float32)
        known = ids > 0
        grid[np.nonzero(known)[0], ids[known] - 1] = 1.0
        inv = np.fromiter((player.inventory[k] for k in ITEMS), dtype=np.float32, count=len(ITEMS))
        facing = np.zeros(len(DIRECTIONS), np.float32)
        facing[list(DIRECTIONS).index(self.facing)] = 1.0
        return np.concatenate([grid.reshape(-1), inv / 9.0, facing])


def _world_seed(seed: int, episode: int) -> int:
    """The world seed crafter derives from an env seed and an episode index."""
    return hash((seed, episode)) % (2**31 - 1)
