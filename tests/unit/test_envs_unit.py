"""Unit tests: the memory map, path-finding and the generated manual."""

from __future__ import annotations

import copy
import itertools

import numpy as np
from crafter import constants

from rlgpt.envs.crafter.env import NAME_TO_ID
from rlgpt.envs.crafter.manual import game_manual
from rlgpt.envs.crafter.skills.memory import UNKNOWN, MemoryMap
from rlgpt.envs.crafter.skills.navigation import bfs_path, neighbours_of


def _grid(rows: list[str]) -> np.ndarray:
    """'.' free, '#' blocked; rows are y, columns x; returned indexed [x, y]."""
    return np.array([[c == "." for c in row] for row in rows]).T


def test_bfs_goes_around_walls() -> None:
    passable = _grid(
        [
            ".....",
            ".###.",
            ".#...",
            ".#.#.",
            "...#.",
        ]
    )
    goal = np.zeros_like(passable)
    goal[2, 3] = True
    path = bfs_path(passable, (0, 0), goal)
    assert path is not None and path[-1] == (2, 3)
    assert len(path) == 7  # down the left side, then right and up
    cells = [(0, 0), *path]
    for (ax, ay), (bx, by) in itertools.pairwise(cells):
        assert abs(ax - bx) + abs(ay - by) == 1 and passable[bx, by]


def test_bfs_unreachable_and_start_goal() -> None:
    passable = _grid(["..#..", "..#..", "..#.."])
    goal = np.zeros_like(passable)
    goal[4, 1] = True
    assert bfs_path(passable, (0, 0), goal) is None
    goal[0, 0] = True
    assert bfs_path(passable, (0, 0), goal) == []


def test_neighbours_of() -> None:
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    assert neighbours_of(mask).sum() == 4 and not neighbours_of(mask)[1, 1]


def _view(fill: str) -> tuple[np.ndarray, np.ndarray]:
    mats = np.full((9, 7), NAME_TO_ID[fill], np.int16)
    return mats, np.zeros((9, 7), np.int16)


def test_memory_records_only_seen_cells() -> None:
    memory = MemoryMap((20, 12))
    mats, objs = _view("grass")
    mats[0, 0] = NAME_TO_ID["tree"]  # world (1, 2) when the player is at (5, 5)
    objs[4, 3] = NAME_TO_ID["player"]
    objs[8, 6] = NAME_TO_ID["cow"]
    memory.update((5, 5), mats, objs)
    assert memory.known_count() == 63
    assert memory.materials[0, 0] == UNKNOWN and memory.materials[9, 8] != UNKNOWN
    assert memory.nearest("tree", (5, 5)) == (1, 2)
    assert memory.nearest("cow", (5, 5)) == (9, 8)
    assert memory.objects[5, 5] == 0  # the player is not remembered as an obstacle
    assert memory.nearest("water", (5, 5)) is None
    assert memory.frontier()[5, 2] and not memory.frontier()[5, 5]


def test_memory_clips_at_world_edge_and_forgets_moved_creatures() -> None:
    memory = MemoryMap((10, 10))
    mats, objs = _view("sand")
    objs[5, 3] = NAME_TO_ID["zombie"]
    memory.update((0, 0), mats, objs)
    assert memory.known_count() == 5 * 4
    assert memory.nearest("zombie", (0, 0)) == (1, 0)
    memory.update((0, 0), *_view("sand"))
    assert memory.nearest("zombie", (0, 0)) is None
    memory.reset()
    assert memory.known_count() == 0


def test_memory_passable_excludes_lava_objects_and_unknown() -> None:
    memory = MemoryMap((9, 7))
    mats, objs = _view("grass")
    mats[1, 1] = NAME_TO_ID["lava"]
    mats[2, 2] = NAME_TO_ID["water"]
    objs[3, 3] = NAME_TO_ID["cow"]
    objs[5, 5] = NAME_TO_ID["plant"]
    memory.update((4, 3), mats, objs)
    free = memory.passable()
    assert not free[1, 1] and not free[2, 2] and not free[3, 3] and free[0, 0]
    loose = memory.passable(creatures_block=False)
    assert loose[3, 3] and not loose[5, 5]


def test_manual_is_generated_from_the_rules() -> None:
    text = game_manual()
    assert len(text) < 3400
    for achievement in constants.achievements:
        assert f"\n- {achievement}: " in text  # every achievement says how it is unlocked
    table = constants.place["table"]
    assert f"table: uses {table['uses']['wood']} wood" in text
    keys = ("actions", "walkable", "items", "collect", "place", "make", "achievements")
    rules = copy.deepcopy({k: getattr(constants, k) for k in keys})
    rules["place"]["table"]["uses"] = {"wood": 7}
    rules["make"]["wood_pickaxe"]["nearby"] = ["furnace"]
    changed = game_manual(rules)
    assert "table: uses 7 wood" in changed
    assert "wood_pickaxe: uses 1 wood; nearby furnace" in changed
    assert "place_table: place table (uses 7 wood;" in changed
    assert "make_wood_pickaxe: make wood_pickaxe (uses 1 wood; nearby furnace)" in changed
