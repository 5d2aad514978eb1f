"""The grid world's rules and its Gymnasium env: pick up the key, open the door, take the gem."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from rlgpt.envs.base import EnvSettings, TaskSpec

WIDTH, HEIGHT = 7, 3
#: The column of wall between the two rooms; the door is one of its cells.
WALL_X = 4
#: Cell kinds, by id.
CELLS: tuple[str, ...] = ("floor", "wall", "door", "open_door", "key", "gem")
CELL_ID: dict[str, int] = {name: i for i, name in enumerate(CELLS)}
WALKABLE: frozenset[int] = frozenset({CELL_ID["floor"], CELL_ID["open_door"]})
ACTIONS: tuple[str, ...] = ("noop", "move_left", "move_right", "move_up", "move_down", "do")
DIRECTIONS: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
}
MOVES: dict[tuple[int, int], int] = {d: ACTIONS.index(f"move_{n}") for n, d in DIRECTIONS.items()}
ITEMS: tuple[str, ...] = ("key", "gem")
TARGETS: tuple[str, ...] = ("key", "door", "gem")
#: What `do` does to the facing cell: (cell, inventory it needs, what it gives, cell left,
#: achievement). The manual is written from this table.
RULES: tuple[tuple[str, Mapping[str, int], Mapping[str, int], str, str], ...] = (
    ("key", {}, {"key": 1}, "floor", "collect_key"),
    ("door", {"key": 1}, {}, "open_door", "open_door"),
    ("gem", {}, {"gem": 1}, "floor", "collect_gem"),
)
ACHIEVEMENTS: tuple[str, ...] = tuple(rule[4] for rule in RULES)
#: How far the agent sees (cells, in each axis): the observation window and what it remembers.
VIEW_RADIUS = 2
_COLOURS = np.array(
    [[200, 190, 160], [70, 70, 70], [150, 80, 20], [230, 170, 90], [240, 210, 0], [0, 200, 220]],
    dtype=np.uint8,
)
_AGENT_COLOUR = np.array([220, 30, 30], dtype=np.uint8)


class GridWorldEnv(gym.Env[np.ndarray, np.int64]):
    """Two rooms joined by a locked door; the key lies in the agent's room, the gem behind the door.

    Moving into a cell the agent cannot enter only turns it to face that cell; `do` acts on
    the facing cell. The agent sees a window of `VIEW_RADIUS` cells around it and remembers
    what it has seen (`seen`). Step `info` carries `inventory` and `achievements`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}  # noqa: RUF012 - gymnasium API

    def __init__(self, task: TaskSpec, settings: EnvSettings) -> None:
        """Build the env of `task` as `settings` ask (observation, episode length, shaping)."""
        self.task = task
        self.settings = settings
        self.render_mode = "rgb_array"
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        size = settings.pixel_size
        if settings.observation == "pixels":
            self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        else:
            side = 2 * VIEW_RADIUS + 1
            n = side * side * (len(CELLS) + 1) + len(DIRECTIONS) + len(ITEMS)
            self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        self.grid = np.zeros((WIDTH, HEIGHT), np.int64)
        self.seen = np.zeros((WIDTH, HEIGHT), bool)
        self.agent = (0, 0)
        self.facing = DIRECTIONS["down"]
        self.inventory: dict[str, int] = dict.fromkeys(ITEMS, 0)
        self.achievements: dict[str, int] = dict.fromkeys(ACHIEVEMENTS, 0)
        self.steps = 0
        self._solved = False
        self._best: dict[str, int] = {}

    @property
    def privileged(self) -> bool:
        """Whether the whole map counts as seen."""
        return self.settings.privileged

    def cell(self, pos: tuple[int, int]) -> str:
        """The kind of cell at `pos` (`edge` outside the grid)."""
        x, y = pos
        if not (0 <= x < WIDTH and 0 <= y < HEIGHT):
            return "edge"
        return CELLS[int(self.grid[x, y])]

    def facing_cell(self) -> tuple[int, int]:
        """The position the agent faces."""
        return self.agent[0] + self.facing[0], self.agent[1] + self.facing[1]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new layout drawn from the seed (later resets continue its random stream)."""
        super().reset(seed=seed)
        rng = self.np_random
        self.grid[:] = CELL_ID["floor"]
        self.grid[WALL_X, :] = CELL_ID["wall"]
        self.grid[WALL_X, int(rng.integers(HEIGHT))] = CELL_ID["door"]
        left = [(x, y) for x in range(WALL_X) for y in range(HEIGHT)]
        agent, key = rng.choice(len(left), size=2, replace=False)
        self.agent = left[int(agent)]
        self.grid[left[int(key)]] = CELL_ID["key"]
        right = [(x, y) for x in range(WALL_X + 1, WIDTH) for y in range(HEIGHT)]
        self.grid[right[int(rng.integers(len(right)))]] = CELL_ID["gem"]
        self.facing = DIRECTIONS["down"]
        self.inventory = dict.fromkeys(ITEMS, 0)
        self.achievements = dict.fromkeys(ACHIEVEMENTS, 0)
        self.steps = 0
        self._solved = False
        self._best = {item: 0 for item, _ in self.settings.shaping}
        self.seen[:] = self.privileged
        self._look()
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """One primitive action; terminated once the task is solved (if asked), truncated at
        the episode length."""
        index = int(action)
        if not 0 <= index < len(ACTIONS):
            raise ValueError(f"action {index} outside 0..{len(ACTIONS) - 1}")
        self.steps += 1
        before = {a for a, c in self.achievements.items() if c}
        name = ACTIONS[index]
        if name.startswith("move_"):
            self.facing = DIRECTIONS[name.removeprefix("move_")]
            ahead = self.facing_cell()
            if self.cell(ahead) in ("floor", "open_door"):
                self.agent = ahead
        elif name == "do":
            self._interact()
        self._look()
        reward = 0.0
        new = {a for a, c in self.achievements.items() if c} - before
        if self.task.score:
            reward += float(len(new))
        elif not self._solved and self.task.solved(self._info()):
            self._solved = True
            reward += 1.0
        for item, weight in self.settings.shaping:
            gained = self.inventory.get(item, 0) - self._best.get(item, 0)
            if gained > 0:
                reward += weight * gained
                self._best[item] = self.inventory[item]
        terminated = self._solved and self.settings.terminate_on_success
        truncated = not terminated and self.steps >= self.settings.episode_length
        return self._obs(), reward, terminated, truncated, self._info()

    def _interact(self) -> None:
        target = self.facing_cell()
        kind = self.cell(target)
        for cell, needs, gives, leaves, achievement in RULES:
            if kind != cell or any(self.inventory[k] < n for k, n in needs.items()):
                continue
            for item, n in needs.items():
                self.inventory[item] -= n
            for item, n in gives.items():
                self.inventory[item] += n
            self.grid[target] = CELL_ID[leaves]
            self.achievements[achievement] += 1
            return

    def _look(self) -> None:
        x, y = self.agent
        r = VIEW_RADIUS
        self.seen[max(0, x - r) : x + r + 1, max(0, y - r) : y + r + 1] = True

    def _info(self) -> dict[str, Any]:
        return {
            "inventory": dict(self.inventory),
            "achievements": dict(self.achievements),
            "task_success": self._solved,
            "player_pos": self.agent,
        }

    def _obs(self) -> np.ndarray:
        if self.settings.observation == "pixels":
            return self.render()
        side = 2 * VIEW_RADIUS + 1
        window = np.zeros((side, side, len(CELLS) + 1), np.float32)
        for i in range(side):
            for j in range(side):
                pos = (self.agent[0] + i - VIEW_RADIUS, self.agent[1] + j - VIEW_RADIUS)
                kind = self.cell(pos)
                window[i, j, len(CELLS) if kind == "edge" else CELL_ID[kind]] = 1.0
        facing = np.array([d == self.facing for d in DIRECTIONS.values()], np.float32)
        inventory = np.array([min(self.inventory[i], 1) for i in ITEMS], np.float32)
        return np.concatenate([window.reshape(-1), facing, inventory])

    def render(self) -> np.ndarray:
        """An RGB frame of the whole grid, `(pixel_size, pixel_size, 3)`."""
        size = self.settings.pixel_size
        scale = max(1, size // WIDTH)
        image = _COLOURS[self.grid.T]
        image[self.agent[1], self.agent[0]] = _AGENT_COLOUR
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
        frame = np.zeros((size, size, 3), np.uint8)
        h, w = min(size, image.shape[0]), min(size, image.shape[1])
        frame[:h, :w] = image[:h, :w]
        return frame
