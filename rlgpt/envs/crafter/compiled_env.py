"""N Crafter envs in arrays, stepped (and drawn) by the compiled kernels.

`CompiledCrafter` starts episodes from generated worlds, steps every env with one call of
`compiled.step_all` and, for the pixel observation, draws every frame with one call of
`compiled_render.render_all`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlgpt.envs.crafter.compiled import (
    _INITIAL,
    CREATURE_KINDS,
    KIND_NAMES,
    PLAYER,
    _load_world,
    _observe,
    build_rules,
    new_state,
    step_all,
)
from rlgpt.envs.crafter.compiled_render import build_render_tables, render_all, render_frame
from rlgpt.envs.crafter.config import CrafterConfig
from rlgpt.envs.crafter.constants import ACHIEVEMENTS, DIRECTIONS, ID_TO_NAME, ITEMS, VIEW
from rlgpt.envs.crafter.env import _world_seed
from rlgpt.envs.crafter.prefetch import MAX_IN_FLIGHT, WorldQueue, WorldRecipe, make_recipe
from rlgpt.envs.crafter.tasks import get_task


class CompiledCrafter:
    """N Crafter envs stepped together by the compiled kernels (symbolic or pixels).

    `reset(e, seed)` starts the worlds of `CrafterEnv.reset(seed=seed)`; later resets of env
    e continue that seed's sequence. Worlds come from the world-generation helper a few
    episodes ahead (`WorldQueue`).
    """

    def __init__(self, config: CrafterConfig, n_envs: int) -> None:
        """Raises UnknownTaskError for an unknown task."""
        task = get_task(config.task)
        self.config = config
        self.n_envs = n_envs
        self.target = -1 if task.score else ACHIEVEMENTS.index(task.predicates[0].name)
        self.shaping_items = np.array([ITEMS.index(i) for i, _ in config.shaping], np.int64)
        self.shaping_weights = np.array([w for _, w in config.shaping], np.float64)
        self.rules = build_rules(config.episode_length)
        self.state = new_state(n_envs, config.area, len(config.shaping))
        self.pixels = config.observation == "pixels"
        n_channels = len(ID_TO_NAME) - 1
        self.obs_size = VIEW[0] * VIEW[1] * n_channels + len(ITEMS) + len(DIRECTIONS)
        # The symbolic kernel writes into `vectors` even for pixels (it is cheap).
        self.vectors = np.zeros((n_envs, self.obs_size), np.float32)
        self.render = build_render_tables(config.pixel_size)
        size = config.pixel_size
        self.obs: np.ndarray = (
            np.zeros((n_envs, size, size, 3), np.uint8) if self.pixels else self.vectors
        )
        self._render_streams: dict[int, tuple[np.ndarray, int]] = {}
        self.rewards = np.zeros(n_envs, np.float64)
        self.terminated = np.zeros(n_envs, np.bool_)
        self.truncated = np.zeros(n_envs, np.bool_)
        self.new_unlocks = np.zeros(n_envs, np.int64)
        self._seeds = [0] * n_envs
        self._episodes = [0] * n_envs
        self._seeded = [False] * n_envs
        self._unseeded = np.random.default_rng()
        # A few worlds ahead per env, as many in all as the helper keeps in flight.
        depth = max(1, min(3, MAX_IN_FLIGHT // n_envs))
        self._next = [WorldQueue(config.area, depth) for _ in range(n_envs)]

    def reset(self, e: int, seed: int | None = None) -> np.ndarray:
        """Start env e's next episode (its first of `seed` when given); its observation."""
        if seed is None and not self._seeded[e]:  # as CrafterEnv: a random first seed
            seed = int(self._unseeded.integers(0, 2**31 - 1))
        if seed is not None:
            self._seeds[e], self._episodes[e], self._seeded[e] = int(seed), 0, True
        self._episodes[e] += 1
        world_seed = _world_seed(self._seeds[e], self._episodes[e])
        recipe = None
        if self.config.prefetch_worlds:
            seed_e, episode_e = self._seeds[e], self._episodes[e]
            recipe = self._next[e].take(world_seed, lambda k: _world_seed(seed_e, episode_e + k))
        if recipe is None:
            recipe = make_recipe(self.config.area, world_seed)
        self.load(e, recipe)
        self._start_render_stream(e)
        _observe(self.state, e, self.vectors[e])
        if self.pixels:
            render_frame(self.state, self.render, e, self.rules.daylight[0], self.obs[e])
        return self.obs[e]

    def _start_render_stream(self, e: int) -> None:
        """As `CrafterEnv`, every episode renders with a stream seeded from the env seed."""
        seed = self._seeds[e] % (2**31 - 1)
        if seed not in self._render_streams:
            _, keys, pos, _, _ = np.random.RandomState(seed).get_state()
            self._render_streams[seed] = (np.asarray(keys, np.uint32), int(pos))
        self.state.render_key[e], self.state.render_pos[e] = self._render_streams[seed]

    def load(self, e: int, recipe: WorldRecipe) -> None:
        """Put a generated world (the player at the centre, then its creatures) in slot e."""
        creatures = np.array(
            [(*CREATURE_KINDS[name], x, y) for name, x, y in recipe.creatures], np.int64
        ).reshape(-1, 4)
        _, keys, pos, _, _ = recipe.random_state
        _load_world(
            self.state, e, recipe.materials, creatures, np.asarray(keys, np.uint32), int(pos)
        )
        self.state.shaping_max[e, : len(self.shaping_items)] = _INITIAL[self.shaping_items]

    def step(self, actions: np.ndarray) -> None:
        """Advance every env one step; results in `obs`, `rewards`, `terminated`, ..."""
        step_all(
            self.state,
            self.rules,
            np.asarray(actions, np.int64),
            self.target,
            self.shaping_items,
            self.shaping_weights,
            self.config.terminate_on_success,
            self.config.episode_length,
            self.vectors,
            self.rewards,
            self.terminated,
            self.truncated,
            self.new_unlocks,
        )
        if self.pixels:
            daylight = self.rules.daylight[np.minimum(self.state.steps, self.config.episode_length)]
            render_all(self.state, self.render, daylight, self.obs)

    def achievements(self, e: int) -> dict[str, int]:
        """Env e's achievement counters, by name."""
        return dict(zip(ACHIEVEMENTS, self.state.ach[e].tolist(), strict=True))

    def inventory(self, e: int) -> dict[str, int]:
        """Env e's inventory, by name."""
        return dict(zip(ITEMS, self.state.inv[e].tolist(), strict=True))

    def player_pos(self, e: int) -> tuple[int, int]:
        """Env e's player position `(x, y)`."""
        p = int(self.state.player[e])
        return int(self.state.ox[e, p]), int(self.state.oy[e, p])

    def objects(self, e: int) -> list[dict[str, Any]]:
        """Env e's live objects in crafter's order, with their fields (for tests)."""
        s = self.state
        out = []
        for i in range(1, int(s.n_slots[e])):
            kind = int(s.kind[e, i])
            if kind == 0:
                continue
            out.append(
                {
                    "type": KIND_NAMES[kind],
                    "pos": (int(s.ox[e, i]), int(s.oy[e, i])),
                    "health": int(s.inv[e, 0] if kind == PLAYER else s.health[e, i]),
                    "counter": int(s.counter[e, i]),
                    "facing": (int(s.fx[e, i]), int(s.fy[e, i])),
                }
            )
        return out


def warm_up() -> None:
    """Compile the kernels and world generation now (numba caches them next to the
    sources), so that the first training run does not wait for the compiler."""
    for observation in ("symbolic", "pixels"):
        config = CrafterConfig(observation=observation, prefetch_worlds=False)
        game = CompiledCrafter(config, 1)
        game.reset(0, seed=0)
        game.step(np.zeros(1, np.int64))
