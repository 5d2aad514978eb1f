"""The grid world's skill API: what the agent has seen, walking to it, and single interactions."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from rlgpt.envs.base import SkillParam, SkillSpec, StepBudget

from .world import (
    ACHIEVEMENTS,
    ACTIONS,
    DIRECTIONS,
    HEIGHT,
    ITEMS,
    MOVES,
    TARGETS,
    WIDTH,
    GridWorldEnv,
)

Pos = tuple[int, int]


class GridSkills:
    """What a code action may call on the grid world. Holds no task knowledge.

    Every env step goes through `step(action_index)` (None: the env's own `step`, ending
    the call with `OptionInterrupted("episode_end")` when the episode ends); after
    `max_steps` steps the next one raises `OptionInterrupted("step_budget")`. Targets are
    looked up only among the cells the agent has seen.
    """

    def __init__(
        self, env: GridWorldEnv, step: Callable[[int], Any] | None = None, max_steps: int = 100
    ) -> None:
        """Wrap `env` (already reset) for one code-action call."""
        self._env = env
        self._budget = StepBudget(env, step, max_steps)
        self._step = self._budget.take

    @property
    def _steps_used(self) -> int:
        return self._budget.used

    @staticmethod
    def _check(name: str, valid: tuple[str, ...], kind: str) -> None:
        if name not in valid:
            raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")

    def _known(self, pos: Pos) -> str | None:
        """The cell at `pos` as far as the agent has seen it (None: unseen)."""
        x, y = pos
        if not (0 <= x < WIDTH and 0 <= y < HEIGHT):
            return "edge"
        return self._env.cell(pos) if self._env.seen[x, y] else None

    def _instances(self, name: str) -> list[Pos]:
        return [(x, y) for x in range(WIDTH) for y in range(HEIGHT) if self._known((x, y)) == name]

    def _path(self, goals: set[Pos], allow_unseen: bool) -> list[Pos] | None:
        """Shortest walk from the agent to any goal cell over seen free cells (and unseen ones
        when allowed)."""
        start = self._env.agent
        parents: dict[Pos, Pos | None] = {start: None}
        queue = deque([start])
        while queue:
            pos = queue.popleft()
            if pos in goals:
                path = []
                while pos != start:
                    path.append(pos)
                    pos = parents[pos]  # type: ignore[assignment]
                return path[::-1]
            for dx, dy in DIRECTIONS.values():
                nxt = (pos[0] + dx, pos[1] + dy)
                kind = self._known(nxt)
                free = kind in ("floor", "open_door") or (allow_unseen and kind is None)
                if nxt not in parents and free:
                    parents[nxt] = pos
                    queue.append(nxt)
        return None

    def _walk(self, path: list[Pos]) -> bool:
        """Take the first step of `path`; False when the agent did not get there."""
        nxt = path[0]
        ax, ay = self._env.agent
        self._step(MOVES[(nxt[0] - ax, nxt[1] - ay)])
        return self._env.agent == nxt

    # ------------------------------------------------------------- perception
    def inventory(self) -> dict[str, int]:
        """The inventory: item name -> count."""
        return dict(self._env.inventory)

    def count(self, item: str) -> int:
        """How many of `item` the inventory holds."""
        self._check(item, ITEMS, "item")
        return int(self._env.inventory[item])

    def has(self, item: str, n: int = 1) -> bool:
        """Whether the inventory holds at least `n` of `item`."""
        return self.count(item) >= n

    def position(self) -> tuple[int, int]:
        """The agent's position `(x, y)`; y grows downward."""
        return self._env.agent

    def facing(self) -> str:
        """The kind of cell the agent faces (floor, wall, door, open_door, key, gem or edge)."""
        return self._env.cell(self._env.facing_cell())

    def seen(self, name: str) -> bool:
        """Whether an instance of `name` is among the cells the agent has seen."""
        self._check(name, TARGETS, "target")
        return bool(self._instances(name))

    def nearest(self, name: str) -> tuple[int, int] | None:
        """Position of the closest seen instance of `name`, or None."""
        self._check(name, TARGETS, "target")
        ax, ay = self._env.agent
        found = self._instances(name)
        return min(found, key=lambda p: abs(p[0] - ax) + abs(p[1] - ay)) if found else None

    def achievements(self) -> list[str]:
        """Achievements unlocked in this episode."""
        return [a for a in ACHIEVEMENTS if self._env.achievements[a] > 0]

    # ------------------------------------------------------------- navigation
    def move_to(self, name: str, max_steps: int = 30) -> bool:
        """Walk next to the nearest reachable seen instance of `name` and face it; False when
        none is known or reachable within `max_steps` steps."""
        self._check(name, TARGETS, "target")
        start = self._steps_used
        while self._steps_used - start < max_steps:
            if self.facing() == name:
                return True
            ax, ay = self._env.agent
            beside = [d for d in DIRECTIONS.values() if self._known((ax + d[0], ay + d[1])) == name]
            if beside:
                # Moving into a cell the agent cannot enter turns it to face the cell.
                self._step(MOVES[beside[0]])
                continue
            goals = {
                (x + dx, y + dy) for x, y in self._instances(name) for dx, dy in DIRECTIONS.values()
            }
            path = self._path(goals, False) or self._path(goals, True)
            if not path:
                return False
            self._walk(path)
        return self.facing() == name

    def explore(self, steps: int = 10) -> bool:
        """Walk up to `steps` steps toward the nearest unseen cell; True if new cells were seen."""
        before = int(self._env.seen.sum())
        start = self._steps_used
        while self._steps_used - start < steps:
            unseen = {
                (x, y) for x in range(WIDTH) for y in range(HEIGHT) if not self._env.seen[x, y]
            }
            path = self._path(unseen, True) if unseen else None
            if not path or not self._walk(path):
                break
        return int(self._env.seen.sum()) > before

    # ------------------------------------------------------------ interaction
    def do(self) -> bool:
        """Interact with the facing cell (pick up, open); True if anything changed."""
        before = (dict(self._env.inventory), self.facing())
        self._step(ACTIONS.index("do"))
        return (dict(self._env.inventory), self.facing()) != before

    def noop(self) -> bool:
        """Do nothing for one step."""
        self._step(ACTIONS.index("noop"))
        return True


def skill_specs() -> list[SkillSpec]:
    """Descriptions of the public skills (for prompts, grammars and static checks)."""
    target = SkillParam("name", "str", choices=TARGETS)
    item = SkillParam("item", "str", choices=ITEMS)

    def spec(
        method: Callable[..., Any],
        params: tuple[SkillParam, ...],
        returns: Any,
        kind: Any,
        steps_env: bool = False,
    ) -> SkillSpec:
        doc = (method.__doc__ or "").strip().splitlines()[0]
        return SkillSpec(method.__name__, params, returns, doc, kind, steps_env)

    api = GridSkills
    return [
        spec(api.inventory, (), "dict", "perception"),
        spec(api.count, (item,), "int", "perception"),
        spec(api.has, (item, SkillParam("n", "int", default=1)), "bool", "perception"),
        spec(api.position, (), "tuple", "perception"),
        spec(api.facing, (), "str", "perception"),
        spec(api.seen, (target,), "bool", "perception"),
        spec(api.nearest, (target,), "tuple", "perception"),
        spec(api.achievements, (), "list", "perception"),
        spec(
            api.move_to,
            (target, SkillParam("max_steps", "int", default=30)),
            "bool",
            "navigation",
            True,
        ),
        spec(api.explore, (SkillParam("steps", "int", default=10),), "bool", "navigation", True),
        spec(api.do, (), "bool", "interaction", True),
        spec(api.noop, (), "bool", "interaction", True),
    ]
