"""The agent's map of what it has seen: built only from its own egocentric views."""

from __future__ import annotations

import numpy as np
from crafter import constants

from rlgpt.envs.crafter.constants import ID_TO_NAME, MATERIALS, NAME_TO_ID, VIEW
from rlgpt.envs.crafter.skills.navigation import Pos, neighbours_of

UNKNOWN = -1
PLAYER_ID = NAME_TO_ID["player"]
PLANT_ID = NAME_TO_ID["plant"]
MATERIAL_IDS = frozenset(NAME_TO_ID[m] for m in MATERIALS)
# Lava is walkable in crafter but kills; planned paths never enter it.
WALKABLE_IDS: tuple[int, ...] = tuple(NAME_TO_ID[m] for m in constants.walkable)


class MemoryMap:
    """Materials and objects last seen at each world cell; unseen cells stay unknown.

    Arrays are indexed `[x, y]`: `materials` holds a material id or -1 (unknown), `objects`
    the id of the creature/plant last seen there or 0. The player itself is not stored.
    """

    def __init__(self, area: tuple[int, int]) -> None:
        """An empty map of a world of size `area`."""
        self.area = (int(area[0]), int(area[1]))
        self.materials = np.full(self.area, UNKNOWN, np.int16)
        self.objects = np.zeros(self.area, np.int16)
        self.last_pos: Pos | None = None
        self.version = 0
        # Lookup table by material id; index -1 (unknown) hits the last entry, which is False.
        self._walkable_table = np.zeros(len(ID_TO_NAME) + 1, bool)
        self._walkable_table[list(WALKABLE_IDS)] = True

    def reset(self) -> None:
        """Forget everything (a new episode)."""
        self.materials.fill(UNKNOWN)
        self.objects.fill(0)
        self.last_pos = None
        self.version += 1

    def update(self, pos: Pos, mats: np.ndarray, objs: np.ndarray) -> None:
        """Write one egocentric view (shape VIEW, `[x, y]`, centred on `pos`) into the map.

        View cells with id 0 (outside the world) are skipped.
        """
        w, h = self.area
        x0, y0 = pos[0] - VIEW[0] // 2, pos[1] - VIEW[1] // 2
        ax0, ax1, ay0, ay1 = max(x0, 0), min(x0 + VIEW[0], w), max(y0, 0), min(y0 + VIEW[1], h)
        if ax0 >= ax1 or ay0 >= ay1:
            return
        sub = (slice(ax0 - x0, ax1 - x0), slice(ay0 - y0, ay1 - y0))
        self.materials[ax0:ax1, ay0:ay1] = mats[sub]
        seen_objs = objs[sub]
        self.objects[ax0:ax1, ay0:ay1] = np.where(seen_objs == PLAYER_ID, 0, seen_objs)
        self.last_pos = (int(pos[0]), int(pos[1]))
        self.version += 1

    def load_full(self, mats: np.ndarray, objs: np.ndarray, pos: Pos) -> None:
        """Replace the map by the whole world (privileged mode)."""
        self.materials[...] = mats
        self.objects[...] = np.where(objs == PLAYER_ID, 0, objs)
        self.last_pos = (int(pos[0]), int(pos[1]))
        self.version += 1

    # ------------------------------------------------------------------ queries
    @property
    def known(self) -> np.ndarray:
        """Cells seen at least once."""
        return self.materials != UNKNOWN

    def known_count(self) -> int:
        """How many cells have been seen."""
        return int(np.count_nonzero(self.materials != UNKNOWN))

    def mask(self, name: str) -> np.ndarray:
        """Cells where `name` (a material or creature name) was last seen."""
        ident = NAME_TO_ID.get(name)
        if ident is None or name in ("none", "player"):
            raise ValueError(f"unknown name {name!r}; known: {ID_TO_NAME[1:]}")
        if ident in MATERIAL_IDS:
            return (self.materials == ident) & (self.objects == 0)
        return self.objects == ident

    def positions(self, name: str) -> np.ndarray:
        """World positions `(x, y)` of every remembered instance of `name`, shape (N, 2)."""
        return np.argwhere(self.mask(name))

    def nearest(self, name: str, pos: Pos) -> Pos | None:
        """The remembered instance of `name` closest to `pos` (Manhattan distance)."""
        found = self.positions(name)
        if found.size == 0:
            return None
        dist = np.abs(found[:, 0] - pos[0]) + np.abs(found[:, 1] - pos[1])
        best = found[int(np.argmin(dist))]
        return int(best[0]), int(best[1])

    def passable(self, allow_unknown: bool = False, creatures_block: bool = True) -> np.ndarray:
        """Cells a path may enter: known walkable ground (not lava) with no object on it.

        Args:
            allow_unknown: Also allow unseen cells.
            creatures_block: Whether moving creatures and arrows block (plants always do).
        """
        walkable = self._walkable_table[self.materials]
        if creatures_block:
            free = walkable & (self.objects == 0)
        else:
            free = walkable & (self.objects != PLANT_ID)
        if allow_unknown:
            free |= self.materials == UNKNOWN
        return free

    def frontier(self) -> np.ndarray:
        """Known passable cells next to an unknown cell (where exploring reveals more)."""
        return self.passable() & neighbours_of(self.materials == UNKNOWN)

    def name_at(self, pos: Pos) -> str:
        """What was last seen at `pos`: a creature, a material, or 'unknown'/'none'."""
        x, y = pos
        if not (0 <= x < self.area[0] and 0 <= y < self.area[1]):
            return "none"
        if self.objects[x, y]:
            return ID_TO_NAME[int(self.objects[x, y])]
        mat = int(self.materials[x, y])
        return "unknown" if mat == UNKNOWN else ID_TO_NAME[mat]
