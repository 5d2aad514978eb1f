"""The skill API code actions call: perception, navigation to seen targets, single interactions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from crafter import constants

from rlgpt.envs.base import SkillSpec, StepBudget
from rlgpt.envs.crafter.constants import (
    ACHIEVEMENTS,
    ACTIONS,
    DIRECTIONS,
    ID_TO_NAME,
    ITEMS,
    NAME_TO_ID,
    VIEW,
)
from rlgpt.envs.crafter.skills.memory import WALKABLE_IDS
from rlgpt.envs.crafter.skills.navigation import STEPS, Pos, bfs_path, neighbours_of
from rlgpt.envs.crafter.skills.specs import MAKE_RULES, PLACE_RULES, TARGETS, build_skill_specs

if TYPE_CHECKING:
    from rlgpt.envs.crafter.env import CrafterEnv

ACTION_INDEX = {name: i for i, name in enumerate(ACTIONS)}
MOVE_ACTION = {d: ACTION_INDEX[f"move_{name}"] for d, name in DIRECTIONS.items()}
WALKABLE_NAMES = frozenset(ID_TO_NAME[i] for i in WALKABLE_IDS)
MAX_ENERGY = int(constants.items["energy"]["max"])
# Creatures `do` hits until they leave the facing cell: the game shows no creature health,
# so a fight ends when the creature is no longer seen there (dead or moved away).
CREATURE_IDS = frozenset(NAME_TO_ID[n] for n in ("cow", "zombie", "skeleton"))
# Bounds one `do()` fight: more hits than any crafter creature survives unarmed.
MAX_HITS = 10


class SkillAPI:
    """What a code action may call. Holds no task knowledge and reads no hidden state.

    Every env step goes through `step(action_index)`. With `step=None` the API steps the
    env itself and raises `OptionInterrupted("episode_end")` when the episode ends. Once
    `max_steps` steps have been taken by this API object, the next step raises
    `OptionInterrupted("step_budget")`. Targets are found in the map of what the agent
    has seen (`env.memory`); with a privileged env the whole map is used. Everything else
    it reads is on screen (the 9x7 view, the inventory bar, the player's facing and sleep)
    or in crafter's per-step info (unlocked achievements, the player's world position).
    Positions are absolute world coordinates; the screen itself shows only the local view.
    """

    def __init__(
        self, env: CrafterEnv, step: Callable[[int], Any] | None = None, max_steps: int = 300
    ) -> None:
        """Wrap `env` (a CrafterEnv, already reset) for one code-action call."""
        self._env = env
        self._budget = StepBudget(env, step, max_steps)
        self._step = self._budget.take
        self._memory = env.memory

    # -------------------------------------------------------------- internals
    @property
    def _steps_used(self) -> int:
        return self._budget.used

    def _refresh(self) -> None:
        if self._env.privileged:
            mats, objs = self._env.full_map()
            self._memory.load_full(mats, objs, self._env.player_pos)

    def _facing_ids(self) -> tuple[int, int]:
        """Material id and object id (0 = none) of the facing cell, as the view shows them."""
        mats, objs = self._env.local_layers()
        fx, fy = self._env.facing
        i, j = VIEW[0] // 2 + fx, VIEW[1] // 2 + fy
        return int(mats[i, j]), int(objs[i, j])

    def _snapshot(self) -> tuple[Any, ...]:
        """What is on screen that an interaction can change: inventory bar, facing cell, sleep."""
        inv = self._env.inventory
        return (tuple(inv[k] for k in ITEMS), *self._facing_ids(), self._env.sleeping)

    def _state(self) -> tuple[Any, ...]:
        return (*self._snapshot(), self._env.player_pos, self._env.facing)

    def _check_target(self, name: str) -> None:
        if name not in TARGETS:
            raise ValueError(f"unknown target {name!r}; valid: {', '.join(TARGETS)}")

    def _check_item(self, item: str) -> None:
        if item not in ITEMS:
            raise ValueError(f"unknown item {item!r}; valid: {', '.join(ITEMS)}")

    def _is_free(self, pos: Pos) -> bool:
        """Whether the player would walk into `pos` (as far as the current view shows)."""
        return self._memory.name_at(pos) in WALKABLE_NAMES

    def _adjacent_dirs(self, name: str) -> list[Pos]:
        px, py = self._env.player_pos
        return [d for d in STEPS if self._memory.name_at((px + d[0], py + d[1])) == name]

    def _face_dir(self, d: Pos) -> None:
        """Turn toward direction `d` (crafter turns in place only toward a blocked cell)."""
        if self._env.facing == d:
            return
        px, py = self._env.player_pos
        ahead = (px + d[0], py + d[1])
        lava = self._memory.name_at(ahead) == "lava"
        if not lava and not self._is_free(ahead):
            self._step(MOVE_ACTION[d])
            return
        back = (-d[0], -d[1])
        if self._is_free((px + back[0], py + back[1])):
            # Step back and forth: arriving from behind leaves the player facing `d`.
            self._step(MOVE_ACTION[back])
            if self._env.player_pos == (px + back[0], py + back[1]):
                self._step(MOVE_ACTION[d])
        elif not lava:
            self._step(MOVE_ACTION[d])

    # ------------------------------------------------------------- perception
    def inventory(self) -> dict[str, int]:
        """The inventory: item name -> count (includes health, food, drink, energy)."""
        return self._env.inventory

    def count(self, item: str) -> int:
        """How many of `item` the inventory holds."""
        self._check_item(item)
        return self._env.inventory[item]

    def has(self, item: str, n: int = 1) -> bool:
        """Whether the inventory holds at least `n` of `item`."""
        return self.count(item) >= n

    def status(self) -> dict[str, int]:
        """Health, food, drink and energy (0..9)."""
        return self._env.status

    def position(self) -> tuple[int, int]:
        """The player's absolute world position `(x, y)`; y grows downward."""
        return self._env.player_pos

    def facing(self) -> str:
        """The name of the material or creature in the cell the player faces."""
        return self._env.facing_name()

    def nearby(self, radius: int = 4) -> dict[str, int]:
        """Names visible now within `radius` cells (per axis) -> number of cells."""
        view = self._env.local_view()
        cx, cy = VIEW[0] // 2, VIEW[1] // 2
        r = max(0, int(radius))
        window = view[max(cx - r, 0) : cx + r + 1, max(cy - r, 0) : cy + r + 1]
        ids, counts = np.unique(window, return_counts=True)
        return {
            ID_TO_NAME[int(i)]: int(c)
            for i, c in zip(ids, counts, strict=True)
            if ID_TO_NAME[int(i)] not in ("none", "player")
        }

    def seen(self, name: str) -> bool:
        """Whether an instance of `name` is in the map of seen cells."""
        self._check_target(name)
        self._refresh()
        return bool(self._memory.mask(name).any())

    def nearest(self, name: str) -> tuple[int, int] | None:
        """Absolute world position of the closest remembered instance of `name`, or None."""
        self._check_target(name)
        self._refresh()
        return self._memory.nearest(name, self._env.player_pos)

    def achievements(self) -> list[str]:
        """Achievements unlocked in this episode (crafter reports them with every step)."""
        return [a for a, c in self._env.achievements.items() if c > 0]

    # ------------------------------------------------------------- navigation
    def face(self, name: str) -> bool:
        """Turn toward an adjacent instance of `name`; True when facing it."""
        self._check_target(name)
        if self.facing() == name:
            return True
        self._refresh()
        dirs = self._adjacent_dirs(name)
        if not dirs:
            return False
        self._face_dir(dirs[0])
        return self.facing() == name

    def move_to(self, name: str, max_steps: int = 100) -> bool:
        """Walk next to the nearest reachable seen instance of `name` and face it.

        Plans a shortest path over the seen map (through unseen cells only when needed),
        re-plans when the way is blocked or the map changes, and returns False when no
        instance is known or reachable, or after `max_steps` steps.
        """
        self._check_target(name)
        start = self._budget.used
        path: list[Pos] = []
        stalls = 0
        while True:
            if self.facing() == name:
                return True
            if self._budget.used - start >= max_steps or stalls > 2:
                return False
            before = self._budget.used
            self._refresh()
            if self._adjacent_dirs(name):
                self.face(name)
            else:
                if not path or not self._is_free(path[0]) or not self._leads_to(path[-1], name):
                    path = self._plan(name)
                    if not path:
                        return False
                nxt = path.pop(0)
                px, py = self._env.player_pos
                d = (nxt[0] - px, nxt[1] - py)
                if d in MOVE_ACTION:
                    self._step(MOVE_ACTION[d])
                if self._env.player_pos != nxt:
                    path = []  # blocked (e.g. a creature stepped in): re-plan
            stalls = stalls + 1 if self._budget.used == before else 0

    def _leads_to(self, end: Pos, name: str) -> bool:
        x, y = end
        return any(self._memory.name_at((x + dx, y + dy)) == name for dx, dy in STEPS)

    def _plan(self, name: str) -> list[Pos]:
        target = self._memory.mask(name)
        if not target.any():
            return []
        goal = neighbours_of(target)
        pos = self._env.player_pos
        # Prefer seen free cells; then let creatures (which move) not block; then unseen cells.
        for creatures, unknown in ((True, False), (False, False), (False, True)):
            passable = self._memory.passable(allow_unknown=unknown, creatures_block=creatures)
            path = bfs_path(passable, pos, goal & passable)
            if path:
                return path
        return []

    def explore(self, steps: int = 20) -> bool:
        """Walk up to `steps` steps toward the nearest unseen part of the map.

        Returns True when new cells were seen, False when nothing reachable is left unseen
        (always the case with a privileged env, whose map is complete).
        """
        if self._env.privileged:
            self._refresh()
        before = self._memory.known_count()
        start = self._budget.used
        path: list[Pos] = []
        stalls = 0
        while self._budget.used - start < steps and stalls <= 2:
            before_step = self._budget.used
            stalls += 1
            if not path or not self._is_free(path[0]):
                frontier = self._memory.frontier()
                path = bfs_path(self._memory.passable(), self._env.player_pos, frontier) or []
                if not path:
                    break
            nxt = path.pop(0)
            px, py = self._env.player_pos
            d = (nxt[0] - px, nxt[1] - py)
            if d not in MOVE_ACTION:
                path = []
                continue
            self._step(MOVE_ACTION[d])
            stalls = 0 if self._budget.used > before_step else stalls
            if self._env.player_pos != nxt:
                path = []
            elif not path or not self._memory.frontier()[path[-1]]:
                path = []  # the goal was seen on the way: pick the next frontier
        return self._memory.known_count() > before

    # ------------------------------------------------------------ interaction
    def do(self) -> bool:
        """Interact with the facing cell (collect, drink, eat, fight); True if anything changed.

        One step, except on a cow, zombie or skeleton: then it hits until that creature is
        no longer seen in the facing cell (killed or moved away), at most `MAX_HITS` steps.
        "Changed" means the inventory bar, the facing cell or the player's sleep changed.
        """
        creature = self._facing_ids()[1]
        before = self._snapshot()
        self._step(ACTION_INDEX["do"])
        for _ in range(MAX_HITS - 1):
            if creature not in CREATURE_IDS or self._facing_ids()[1] != creature:
                break
            if self._env.sleeping:  # a sleeping player's actions are ignored: stop wasting steps
                break
            self._step(ACTION_INDEX["do"])
        return self._snapshot() != before

    def place(self, item: str) -> bool:
        """Place `item` on the facing cell, first turning to a suitable adjacent cell if needed.

        Returns True when the item was placed; False (without stepping) when the inventory
        lacks what placing uses.
        """
        if item not in PLACE_RULES:
            raise ValueError(f"cannot place {item!r}; placeable: {', '.join(PLACE_RULES)}")
        rule = PLACE_RULES[item]
        uses: dict[str, int] = rule["uses"]
        if not self._holds(uses):
            return False
        where = set(rule["where"])
        for _ in range(6):
            if self._facing_allows(where):
                before = self._env.inventory
                self._step(ACTION_INDEX[f"place_{item}"])
                return self._used_up(uses, before)
            if not self._turn_to_allowed(where):
                return False
        return False

    def _holds(self, uses: dict[str, int]) -> bool:
        inv = self._env.inventory
        return all(inv[k] >= v for k, v in uses.items())

    def _used_up(self, uses: dict[str, int], before: dict[str, int]) -> bool:
        """Whether the materials of `uses` left the inventory: crafter takes them only when
        placing or making succeeds, and nothing else spends them."""
        after = self._env.inventory
        return any(after[k] < before[k] for k in uses)

    def _facing_allows(self, where: set[str]) -> bool:
        mat, obj = self._facing_ids()
        return not obj and ID_TO_NAME[mat] in where

    def _turn_to_allowed(self, where: set[str]) -> bool:
        px, py = self._env.player_pos
        options = [d for d in STEPS if self._memory.name_at((px + d[0], py + d[1])) in where]
        if options:
            self._face_dir(options[0])
            return True
        free = [d for d in STEPS if self._is_free((px + d[0], py + d[1]))]
        if not free:
            return False
        self._step(MOVE_ACTION[free[0]])
        return True

    def make(self, item: str) -> bool:
        """Make `item` (a tool) with what is nearby; True when the item was made.

        Returns False without stepping when the inventory lacks what making uses.
        """
        if item not in MAKE_RULES:
            raise ValueError(f"cannot make {item!r}; makeable: {', '.join(MAKE_RULES)}")
        uses: dict[str, int] = MAKE_RULES[item]["uses"]
        if not self._holds(uses):
            return False
        before = self._env.inventory
        self._step(ACTION_INDEX[f"make_{item}"])
        # Not `item` rising: at its maximum count a successful make leaves it unchanged.
        return self._used_up(uses, before)

    def sleep(self, max_steps: int = 200) -> bool:
        """Sleep until woken (energy restored or hurt); True if the player slept and woke up.

        Returns False without stepping when energy is already full.
        """
        env = self._env
        if not env.sleeping and env.inventory["energy"] >= MAX_ENERGY:
            return False
        start = self._budget.used
        slept = False
        while self._budget.used - start < max_steps:
            self._step(ACTION_INDEX["sleep"])
            if env.sleeping:
                slept = True
            elif slept:
                return True
        return False

    def noop(self) -> bool:
        """Do nothing for one step."""
        self._step(ACTION_INDEX["noop"])
        return True

    def act(self, primitive_name: str) -> bool:
        """Take one primitive action by name; True if anything visible changed.

        Visible: the inventory bar, the facing cell, sleep, position and facing. Raises
        ValueError for an unknown action name.
        """
        if primitive_name not in ACTION_INDEX:
            raise ValueError(f"unknown action {primitive_name!r}; valid: {', '.join(ACTIONS)}")
        before = self._state()
        self._step(ACTION_INDEX[primitive_name])
        return self._state() != before


def skill_specs() -> list[SkillSpec]:
    """Descriptions of the public SkillAPI methods (for prompts and static checks)."""
    return build_skill_specs(SkillAPI)


__all__ = ["ACHIEVEMENTS", "NAME_TO_ID", "SkillAPI", "skill_specs"]
