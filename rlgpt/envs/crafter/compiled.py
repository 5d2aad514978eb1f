"""Crafter's step compiled with numba, for many envs at once, step for step crafter's own.

The worlds of N envs live in arrays (`State`) and one compiled call advances all of them:
the player's update, cows, zombies, skeletons, arrows and plants near the player, creature
balancing every 10 steps, rewards and the symbolic observation. Rules are read from
crafter's data file (what can be collected, placed and made, and with what). The world's
random stream is crafter's MT19937 run inside the kernel on the state that world
generation leaves, and every draw happens in crafter's order, so an episode is the one
`CrafterEnv` (and `crafter.Env`, see the parity tests) plays for the same seed and actions.

The symbolic observation is built here, the RGB frame by `compiled_render`; `compiled_env`
holds the envs and starts their episodes. Skills need the Python env (`CrafterEnv`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numba
import numpy as np
from crafter import constants

from rlgpt.envs.crafter.constants import (
    ACHIEVEMENTS,
    ACTIONS,
    ID_TO_NAME,
    ITEMS,
    MATERIALS,
    VIEW,
)

# Object kinds (slot value 0 = no object).
PLAYER, COW, ZOMBIE, SKELETON, ARROW, PLANT = 1, 2, 3, 4, 5, 6
KIND_NAMES = {
    PLAYER: "Player",
    COW: "Cow",
    ZOMBIE: "Zombie",
    SKELETON: "Skeleton",
    ARROW: "Arrow",
    PLANT: "Plant",
}
# Semantic id (`ID_TO_NAME`) that the observation shows for each kind.
_KIND_SEMANTIC = np.zeros(8, np.int64)
for _kind, _name in (
    (PLAYER, "player"),
    (COW, "cow"),
    (ZOMBIE, "zombie"),
    (SKELETON, "skeleton"),
    (ARROW, "arrow"),
    (PLANT, "plant"),
):
    _KIND_SEMANTIC[_kind] = ID_TO_NAME.index(_name)

CAPACITY = 1024  # object slots per env; compacted when fewer than _HEADROOM are left
_HEADROOM = 320  # more than one step can add: an arrow per skeleton, spawns, a plant
CHUNK = 12  # crafter's chunk side
REACH = 18  # crafter updates objects within 2 * max(view) of the player
_N_STATS = 4  # hunger, thirst, fatigue, recover
_DIRS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], np.int64)  # crafter's `all_dirs`


def _mat(name: str) -> int:
    return MATERIALS.index(name) + 1


def _item(name: str) -> int:
    return ITEMS.index(name)


def _ach(name: str) -> int:
    return ACHIEVEMENTS.index(name)


class Rules(NamedTuple):
    """crafter's data file as arrays the kernel reads (indexed by material, item, action)."""

    walk_creature: np.ndarray  # (materials,) bool: where cows, zombies, skeletons may go
    walk_player: np.ndarray  # ... the player (also lava)
    walk_arrow: np.ndarray  # ... arrows (also water and lava)
    collect: np.ndarray  # (materials, 7) int64: ok, req item, req amount, item, amount, ach, leaves
    collect_prob: np.ndarray  # (materials,) float64
    place: np.ndarray  # (actions, 6) int64: ok, use item, amount, material (0: plant), ach, -
    place_where: np.ndarray  # (actions, materials) bool
    make: np.ndarray  # (actions, 10) int64: ok, item, ach, 3 x (use item, amount), -
    make_nearby: np.ndarray  # (actions, materials) bool
    daylight: np.ndarray  # (steps + 1,) float64: crafter's daylight at each step


def _daylight(step: int) -> float:
    """crafter's `Env._update_time`, with numpy's own cos (the kernel reads a table)."""
    progress = (step / 300) % 1 + 0.3
    return float(1 - np.abs(np.cos(np.pi * progress)) ** 3)


def build_rules(episode_length: int) -> Rules:
    """The rule tables from crafter's data, and the daylight of every step of an episode."""
    n_mat = len(MATERIALS) + 1
    n_act = len(ACTIONS)

    def mask(names: Sequence[str]) -> np.ndarray:
        out = np.zeros(n_mat, np.bool_)
        for name in names:
            out[_mat(name)] = True
        return out

    collect = np.zeros((n_mat, 7), np.int64)
    collect_prob = np.ones(n_mat, np.float64)
    for name, info in constants.collect.items():
        require = list(info["require"].items())
        receive = list(info["receive"].items())
        if len(require) > 1 or len(receive) != 1:
            raise NotImplementedError(f"collect rule of {name} has an unsupported shape")
        req_item, req_amount = (_item(require[0][0]), require[0][1]) if require else (0, 0)
        item, amount = receive[0]
        collect[_mat(name)] = (
            1,
            req_item,
            req_amount,
            _item(item),
            amount,
            _ach(f"collect_{item}"),
            _mat(info["leaves"]),
        )
        collect_prob[_mat(name)] = float(info.get("probability", 1))
    place = np.zeros((n_act, 6), np.int64)
    place_where = np.zeros((n_act, n_mat), np.bool_)
    for name, info in constants.place.items():
        action = ACTIONS.index(f"place_{name}")
        (use, amount), *more = info["uses"].items()
        if (
            more
            or info["type"] not in ("material", "object")
            or (info["type"] == "object" and name != "plant")
        ):
            raise NotImplementedError(f"place rule of {name} has an unsupported shape")
        material = _mat(name) if info["type"] == "material" else 0
        place[action] = (1, _item(use), amount, material, _ach(f"place_{name}"), 0)
        place_where[action] = mask(info["where"])
    make = np.zeros((n_act, 10), np.int64)
    make_nearby = np.zeros((n_act, n_mat), np.bool_)
    for name, info in constants.make.items():
        action = ACTIONS.index(f"make_{name}")
        uses = list(info["uses"].items())
        if len(uses) > 3 or info["gives"] != 1:
            raise NotImplementedError(f"make rule of {name} has an unsupported shape")
        row = [1, _item(name), _ach(f"make_{name}")]
        for use, amount in [*uses, *[("health", 0)] * (3 - len(uses))]:
            row += [_item(use), amount]
        make[action] = [*row, 0]
        make_nearby[action] = mask(info["nearby"])
    walkable = list(constants.walkable)
    return Rules(
        walk_creature=mask(walkable),
        walk_player=mask([*walkable, "lava"]),
        walk_arrow=mask([*walkable, "water", "lava"]),
        collect=collect,
        collect_prob=collect_prob,
        place=place,
        place_where=place_where,
        make=make,
        make_nearby=make_nearby,
        daylight=np.array([_daylight(s) for s in range(episode_length + 1)], np.float64),
    )


class State(NamedTuple):
    """The worlds of N envs (leading axis: env); objects live in numbered slots."""

    mat: np.ndarray  # (N, W, H) uint8 material ids
    objmap: np.ndarray  # (N, W, H) int32 slot of the object on a cell (0: none)
    kind: np.ndarray  # (N, C) int8 object kind per slot (0: removed or unused)
    ox: np.ndarray  # (N, C) int64 position
    oy: np.ndarray
    health: np.ndarray  # (N, C) int64 (the player's health is inv[:, 0])
    counter: np.ndarray  # (N, C) int64 zombie cooldown, skeleton reload, plant growth
    fx: np.ndarray  # (N, C) int64 facing of the player and of arrows
    fy: np.ndarray
    n_slots: np.ndarray  # (N,) int64 slots used (crafter's len(world._objects))
    player: np.ndarray  # (N,) int64 the player's slot
    inv: np.ndarray  # (N, items) int64
    ach: np.ndarray  # (N, achievements) int64
    sleeping: np.ndarray  # (N,) bool
    player_last_health: np.ndarray  # (N,) int64 the player's own `_last_health`
    life: np.ndarray  # (N, 4) float64 hunger, thirst, fatigue, recover
    chunk_order: np.ndarray  # (N, chunks) int64 chunks in crafter's dict order
    n_chunks: np.ndarray  # (N,) int64
    chunk_seen: np.ndarray  # (N, chunks) bool
    mt_key: np.ndarray  # (N, 624) uint32 the world's MT19937 state
    mt_pos: np.ndarray  # (N,) int64
    render_key: np.ndarray  # (N, 624) uint32 the render stream (night noise)
    render_pos: np.ndarray  # (N,) int64
    steps: np.ndarray  # (N,) int64 steps of the episode
    last_health: np.ndarray  # (N,) int64 the env's health at the last step (reward)
    unlocked: np.ndarray  # (N, achievements) bool
    task_done: np.ndarray  # (N,) bool
    shaping_max: np.ndarray  # (N, shaping terms) int64
    chunk_counts: np.ndarray  # (N, chunks, 3) int64 scratch: zombies, skeletons, cows
    candidates: np.ndarray  # (N, 2, C) int64 scratch: despawn candidates and their order


def new_state(n_envs: int, area: tuple[int, int], n_shaping: int) -> State:
    """Empty arrays for `n_envs` worlds of `area`."""
    w, h = area
    n_chunks = -(-w // CHUNK) * -(-h // CHUNK)
    c = CAPACITY

    def ints(*shape: int) -> np.ndarray:
        return np.zeros(shape, np.int64)

    return State(
        mat=np.zeros((n_envs, w, h), np.uint8),
        objmap=np.zeros((n_envs, w, h), np.int32),
        kind=np.zeros((n_envs, c), np.int8),
        ox=ints(n_envs, c),
        oy=ints(n_envs, c),
        health=ints(n_envs, c),
        counter=ints(n_envs, c),
        fx=ints(n_envs, c),
        fy=ints(n_envs, c),
        n_slots=ints(n_envs),
        player=ints(n_envs),
        inv=ints(n_envs, len(ITEMS)),
        ach=ints(n_envs, len(ACHIEVEMENTS)),
        sleeping=np.zeros(n_envs, np.bool_),
        player_last_health=ints(n_envs),
        life=np.zeros((n_envs, _N_STATS), np.float64),
        chunk_order=ints(n_envs, n_chunks),
        n_chunks=ints(n_envs),
        chunk_seen=np.zeros((n_envs, n_chunks), np.bool_),
        mt_key=np.zeros((n_envs, 624), np.uint32),
        mt_pos=ints(n_envs),
        render_key=np.zeros((n_envs, 624), np.uint32),
        render_pos=ints(n_envs),
        steps=ints(n_envs),
        last_health=ints(n_envs),
        unlocked=np.zeros((n_envs, len(ACHIEVEMENTS)), np.bool_),
        task_done=np.zeros(n_envs, np.bool_),
        shaping_max=ints(n_envs, max(n_shaping, 1)),
        chunk_counts=ints(n_envs, n_chunks, 3),
        candidates=ints(n_envs, 2, c),
    )


# Kernel functions run without numba's reference counting (its `_nrt` option, in numba's
# targets since long before the oldest numba this package allows): every call passing the
# tuple of state arrays would otherwise count each array up and down (measured: ~0.35 us per
# call, ten times the whole step). So nothing here allocates; scratch space is in the state.
_kernel = numba.njit(cache=True, _nrt=False)  # type: ignore[call-overload]


# ------------------------------------------------------------------ random stream (MT19937)
@_kernel
def _mt_refill(key: np.ndarray) -> None:  # pragma: no cover - compiled
    n, m = 624, 397
    for i in range(n):
        y = (np.int64(key[i]) & 0x80000000) | (np.int64(key[(i + 1) % n]) & 0x7FFFFFFF)
        value = np.int64(key[(i + m) % n]) ^ (y >> 1)
        if y & 1:
            value ^= 0x9908B0DF
        key[i] = np.uint32(value)


@_kernel
def mt_next(key: np.ndarray, pos: np.ndarray, e: int) -> np.int64:  # pragma: no cover
    """The next 32-bit output of env e's stream `key[e]`, `pos[e]` (numpy's MT19937)."""
    if pos[e] >= 624:
        _mt_refill(key[e])
        pos[e] = 0
    y = np.int64(key[e, pos[e]])
    pos[e] += 1
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y & 0xFFFFFFFF


@_kernel
def random_double(key: np.ndarray, pos: np.ndarray, e: int) -> float:  # pragma: no cover
    """`RandomState.random_sample()`: one 53-bit double from two outputs."""
    a = mt_next(key, pos, e) >> 5
    b = mt_next(key, pos, e) >> 6
    return (a * 67108864.0 + b) / 9007199254740992.0


@_kernel
def _mt_next(s: State, e: int) -> np.int64:  # pragma: no cover - compiled
    return mt_next(s.mt_key, s.mt_pos, e)


@_kernel
def _uniform(s: State, e: int) -> float:  # pragma: no cover - compiled
    """`RandomState.uniform()` on the world's stream."""
    return random_double(s.mt_key, s.mt_pos, e)


@_kernel
def _randint(s: State, e: int, high: int) -> int:  # pragma: no cover - compiled
    """`RandomState.randint(0, high)`: masked rejection sampling, no draw when high == 1."""
    top = high - 1
    if top == 0:
        return 0
    mask = top
    mask |= mask >> 1
    mask |= mask >> 2
    mask |= mask >> 4
    mask |= mask >> 8
    mask |= mask >> 16
    while True:
        value = _mt_next(s, e) & mask
        if value <= top:
            return int(value)


# ------------------------------------------------------------------------ world access
@_kernel
def _inside(s: State, x: int, y: int) -> bool:  # pragma: no cover - compiled
    return 0 <= x < s.mat.shape[1] and 0 <= y < s.mat.shape[2]


@_kernel
def _chunk_of(s: State, x: int, y: int) -> int:  # pragma: no cover - compiled
    per_column = -(-s.mat.shape[2] // CHUNK)
    return (x // CHUNK) * per_column + y // CHUNK


@_kernel
def _touch_chunk(s: State, e: int, x: int, y: int) -> None:  # pragma: no cover - compiled
    """crafter's chunk dict gains a key the first time an object enters the chunk."""
    c = _chunk_of(s, x, y)
    if not s.chunk_seen[e, c]:
        s.chunk_seen[e, c] = True
        s.chunk_order[e, s.n_chunks[e]] = c
        s.n_chunks[e] += 1


@_kernel
def _add(s: State, e: int, kind: int, x: int, y: int, health: int) -> int:  # pragma: no cover
    i = s.n_slots[e]
    s.n_slots[e] += 1
    s.kind[e, i] = kind
    s.ox[e, i], s.oy[e, i] = x, y
    s.health[e, i] = health
    s.counter[e, i] = 0
    s.fx[e, i], s.fy[e, i] = 0, 0
    s.objmap[e, x, y] = i
    _touch_chunk(s, e, x, y)
    return i


@_kernel
def _remove(s: State, e: int, i: int) -> None:  # pragma: no cover - compiled
    if s.kind[e, i] == 0:
        return
    s.objmap[e, s.ox[e, i], s.oy[e, i]] = 0
    s.kind[e, i] = 0


@_kernel
def _is_free(s: State, e: int, x: int, y: int, walk: np.ndarray) -> bool:  # pragma: no cover
    return _inside(s, x, y) and s.objmap[e, x, y] == 0 and walk[s.mat[e, x, y]]


@_kernel
def _move(
    s: State, e: int, i: int, dx: int, dy: int, walk: np.ndarray
) -> bool:  # pragma: no cover - compiled
    """crafter's `Object.move`: True when the target is free, even for a removed object
    (which then stays where it is, as `World.move` ignores it)."""
    x, y = s.ox[e, i] + dx, s.oy[e, i] + dy
    if not _is_free(s, e, x, y, walk):
        return False
    if s.kind[e, i] != 0:
        s.objmap[e, s.ox[e, i], s.oy[e, i]] = 0
        s.objmap[e, x, y] = i
        if _chunk_of(s, x, y) != _chunk_of(s, s.ox[e, i], s.oy[e, i]):
            _touch_chunk(s, e, x, y)
        s.ox[e, i], s.oy[e, i] = x, y
    return True


@_kernel
def _hurt(s: State, e: int, i: int, amount: int) -> None:  # pragma: no cover - compiled
    """`obj.health -= amount`, floored at 0 (the player's health is an inventory item)."""
    if i == s.player[e]:
        s.inv[e, 0] = max(0, s.inv[e, 0] - amount)
    else:
        s.health[e, i] = max(0, s.health[e, i] - amount)


@_kernel
def _distance(s: State, e: int, i: int, j: int) -> int:  # pragma: no cover - compiled
    return abs(s.ox[e, i] - s.ox[e, j]) + abs(s.oy[e, i] - s.oy[e, j])


@_kernel
def _toward(
    s: State, e: int, i: int, j: int, long_axis: bool
) -> tuple[int, int]:  # pragma: no cover
    dx, dy = s.ox[e, j] - s.ox[e, i], s.oy[e, j] - s.oy[e, i]
    if (abs(dx) > abs(dy)) if long_axis else (abs(dx) <= abs(dy)):
        return int(np.sign(dx)), 0
    return 0, int(np.sign(dy))


@_kernel
def _random_dir(s: State, e: int) -> tuple[int, int]:  # pragma: no cover - compiled
    k = _randint(s, e, 4)
    return int(_DIRS[k, 0]), int(_DIRS[k, 1])


# ---------------------------------------------------------------------------- objects
@_kernel
def _update_cow(s: State, r: Rules, e: int, i: int) -> None:  # pragma: no cover - compiled
    if s.health[e, i] <= 0:
        _remove(s, e, i)
    if _uniform(s, e) < 0.5:
        dx, dy = _random_dir(s, e)
        _move(s, e, i, dx, dy, r.walk_creature)


@_kernel
def _update_zombie(s: State, r: Rules, e: int, i: int) -> None:  # pragma: no cover - compiled
    if s.health[e, i] <= 0:
        _remove(s, e, i)
    p = s.player[e]
    if _distance(s, e, i, p) <= 8 and _uniform(s, e) < 0.9:
        dx, dy = _toward(s, e, i, p, _uniform(s, e) < 0.8)
    else:
        dx, dy = _random_dir(s, e)
    _move(s, e, i, dx, dy, r.walk_creature)
    if _distance(s, e, i, p) <= 1:
        if s.counter[e, i]:
            s.counter[e, i] -= 1
        else:
            _hurt(s, e, p, 7 if s.sleeping[e] else 2)
            s.counter[e, i] = 5


@_kernel
def _update_skeleton(s: State, r: Rules, e: int, i: int) -> None:  # pragma: no cover
    if s.health[e, i] <= 0:
        _remove(s, e, i)
    s.counter[e, i] = max(0, s.counter[e, i] - 1)
    p = s.player[e]
    dist = _distance(s, e, i, p)
    if dist <= 3:
        dx, dy = _toward(s, e, i, p, _uniform(s, e) < 0.6)
        if _move(s, e, i, -dx, -dy, r.walk_creature):
            return
    if dist <= 5 and _uniform(s, e) < 0.5:
        dx, dy = _toward(s, e, i, p, True)
        if s.counter[e, i] > 0 or (dx == 0 and dy == 0):
            return
        x, y = s.ox[e, i] + dx, s.oy[e, i] + dy
        if _is_free(s, e, x, y, r.walk_arrow):
            arrow = _add(s, e, ARROW, x, y, 0)
            s.fx[e, arrow], s.fy[e, arrow] = dx, dy
            s.counter[e, i] = 4
    elif dist <= 8 and _uniform(s, e) < 0.3:
        dx, dy = _toward(s, e, i, p, _uniform(s, e) < 0.6)
        _move(s, e, i, dx, dy, r.walk_creature)
    elif _uniform(s, e) < 0.2:
        dx, dy = _random_dir(s, e)
        _move(s, e, i, dx, dy, r.walk_creature)


@_kernel
def _update_arrow(s: State, r: Rules, e: int, i: int) -> None:  # pragma: no cover - compiled
    x, y = s.ox[e, i] + s.fx[e, i], s.oy[e, i] + s.fy[e, i]
    inside = _inside(s, x, y)
    if inside and s.objmap[e, x, y] != 0:
        _hurt(s, e, s.objmap[e, x, y], 2)
        _remove(s, e, i)
    elif not inside or not r.walk_arrow[s.mat[e, x, y]]:
        _remove(s, e, i)
        if inside and (s.mat[e, x, y] == _TABLE or s.mat[e, x, y] == _FURNACE):
            s.mat[e, x, y] = _PATH
    else:
        _move(s, e, i, s.fx[e, i], s.fy[e, i], r.walk_arrow)


@_kernel
def _update_plant(s: State, e: int, i: int) -> None:  # pragma: no cover - compiled
    s.counter[e, i] += 1
    hurt = False
    for d in range(4):
        x, y = s.ox[e, i] + _DIRS[d, 0], s.oy[e, i] + _DIRS[d, 1]
        if _inside(s, x, y) and s.objmap[e, x, y] != 0:
            k = s.kind[e, s.objmap[e, x, y]]
            if k in (ZOMBIE, SKELETON, COW):
                hurt = True
    if hurt:
        s.health[e, i] = max(0, s.health[e, i] - 1)
    if s.health[e, i] <= 0:
        _remove(s, e, i)


# ----------------------------------------------------------------------------- player
_I_HEALTH, _I_FOOD, _I_DRINK, _I_ENERGY = (_item(n) for n in ("health", "food", "drink", "energy"))
_SWORDS = np.array([_item("wood_sword"), _item("stone_sword"), _item("iron_sword")], np.int64)
_SWORD_DAMAGE = np.array([2, 3, 5], np.int64)
_MAX = np.array([constants.items[n]["max"] for n in ITEMS], np.int64)
_A_NOOP, _A_DO, _A_SLEEP = ACTIONS.index("noop"), ACTIONS.index("do"), ACTIONS.index("sleep")
# The direction (row of _DIRS) of each move action, -1 for the others.
_MOVE_DIR = np.array(
    [
        ("left", "right", "up", "down").index(a[5:]) if a.startswith("move_") else -1
        for a in ACTIONS
    ],
    np.int64,
)
_ACH_WAKE = _ach("wake_up")
_ACH_EAT_PLANT, _ACH_EAT_COW = _ach("eat_plant"), _ach("eat_cow")
_ACH_ZOMBIE, _ACH_SKELETON = _ach("defeat_zombie"), _ach("defeat_skeleton")
_WATER, _LAVA = _mat("water"), _mat("lava")
_GRASS, _PATH, _TABLE, _FURNACE = _mat("grass"), _mat("path"), _mat("table"), _mat("furnace")
_N_CHANNELS = len(ID_TO_NAME) - 1


@_kernel
def _do_object(s: State, e: int, j: int) -> None:  # pragma: no cover - compiled
    damage = 1
    for k in range(3):
        if s.inv[e, _SWORDS[k]]:
            damage = max(damage, _SWORD_DAMAGE[k])
    kind = s.kind[e, j]
    if kind == PLANT:
        if s.counter[e, j] > 300:  # ripe
            s.counter[e, j] = 0
            s.inv[e, _I_FOOD] += 4
            s.ach[e, _ACH_EAT_PLANT] += 1
    elif kind in (ZOMBIE, SKELETON):
        _hurt(s, e, j, damage)
        if s.health[e, j] <= 0:
            s.ach[e, _ACH_ZOMBIE if kind == ZOMBIE else _ACH_SKELETON] += 1
    elif kind == COW:
        _hurt(s, e, j, damage)
        if s.health[e, j] <= 0:
            s.inv[e, _I_FOOD] += 6
            s.ach[e, _ACH_EAT_COW] += 1
            s.life[e, 0] = 0.0  # hunger


@_kernel
def _do_material(s: State, r: Rules, e: int, x: int, y: int) -> None:  # pragma: no cover
    if not _inside(s, x, y):
        return
    m = s.mat[e, x, y]
    if m == _WATER:
        s.life[e, 1] = 0.0  # thirst
    rule = r.collect[m]
    if not rule[0] or s.inv[e, rule[1]] < rule[2]:
        return
    s.mat[e, x, y] = rule[6]
    if _uniform(s, e) <= r.collect_prob[m]:
        s.inv[e, rule[3]] += rule[4]
        s.ach[e, rule[5]] += 1


@_kernel
def _place(s: State, r: Rules, e: int, action: int, x: int, y: int) -> None:  # pragma: no cover
    if not _inside(s, x, y) or s.objmap[e, x, y] != 0:
        return
    rule = r.place[action]
    if not r.place_where[action, s.mat[e, x, y]] or s.inv[e, rule[1]] < rule[2]:
        return
    s.inv[e, rule[1]] -= rule[2]
    if rule[3]:
        s.mat[e, x, y] = rule[3]
    else:
        _add(s, e, PLANT, x, y, 1)
    s.ach[e, rule[4]] += 1


@_kernel
def _nearby_has(s: State, e: int, x: int, y: int, m: int) -> bool:  # pragma: no cover
    """Whether material m is in `world.nearby(pos, 1)`, with Python's slice rules (a
    window starting at -1 is empty, as in crafter)."""
    w, h = s.mat.shape[1], s.mat.shape[2]
    x0, x1, y0, y1 = x - 1, min(x + 2, w), y - 1, min(y + 2, h)
    if x0 < 0:
        x0 = max(x0 + w, 0)
    if y0 < 0:
        y0 = max(y0 + h, 0)
    for i in range(x0, x1):
        for j in range(y0, y1):
            if s.mat[e, i, j] == m:
                return True
    return False


@_kernel
def _make(s: State, r: Rules, e: int, action: int, x: int, y: int) -> None:  # pragma: no cover
    rule = r.make[action]
    for m in range(r.make_nearby.shape[1]):
        if r.make_nearby[action, m] and not _nearby_has(s, e, x, y, m):
            return
    for k in range(3):
        if s.inv[e, rule[3 + 2 * k]] < rule[4 + 2 * k]:
            return
    for k in range(3):
        s.inv[e, rule[3 + 2 * k]] -= rule[4 + 2 * k]
    s.inv[e, rule[1]] += 1
    s.ach[e, rule[2]] += 1


@_kernel
def _update_player(s: State, r: Rules, e: int, i: int, action: int) -> None:  # pragma: no cover
    tx, ty = s.ox[e, i] + s.fx[e, i], s.oy[e, i] + s.fy[e, i]
    target = s.objmap[e, tx, ty] if _inside(s, tx, ty) else 0
    if s.sleeping[e]:
        if s.inv[e, _I_ENERGY] < _MAX[_I_ENERGY]:
            action = _A_SLEEP
        else:
            s.sleeping[e] = False
            s.ach[e, _ACH_WAKE] += 1
    if action == _A_NOOP:
        pass
    elif _MOVE_DIR[action] >= 0:
        d = _MOVE_DIR[action]
        s.fx[e, i], s.fy[e, i] = _DIRS[d, 0], _DIRS[d, 1]
        _move(s, e, i, s.fx[e, i], s.fy[e, i], r.walk_player)
        if s.mat[e, s.ox[e, i], s.oy[e, i]] == _LAVA:
            s.inv[e, _I_HEALTH] = 0
    elif action == _A_DO and target:
        _do_object(s, e, target)
    elif action == _A_DO:
        _do_material(s, r, e, tx, ty)
    elif action == _A_SLEEP:
        if s.inv[e, _I_ENERGY] < _MAX[_I_ENERGY]:
            s.sleeping[e] = True
    elif r.place[action, 0]:
        _place(s, r, e, action, tx, ty)
    elif r.make[action, 0]:
        _make(s, r, e, action, s.ox[e, i], s.oy[e, i])
    _life_stats(s, e)
    for k in range(s.inv.shape[1]):
        s.inv[e, k] = max(0, min(s.inv[e, k], _MAX[k]))
    if s.inv[e, _I_HEALTH] < s.player_last_health[e]:  # woken up when hurt
        s.sleeping[e] = False
    s.player_last_health[e] = s.inv[e, _I_HEALTH]


@_kernel
def _life_stats(s: State, e: int) -> None:  # pragma: no cover - compiled
    """crafter's `_update_life_stats` and `_degen_or_regen_health`."""
    life, inv, sleeping = s.life, s.inv, s.sleeping[e]
    life[e, 0] += 0.5 if sleeping else 1.0
    if life[e, 0] > 25:
        life[e, 0] = 0.0
        inv[e, _I_FOOD] -= 1
    life[e, 1] += 0.5 if sleeping else 1.0
    if life[e, 1] > 20:
        life[e, 1] = 0.0
        inv[e, _I_DRINK] -= 1
    if sleeping:
        life[e, 2] = min(life[e, 2] - 1, 0.0)
    else:
        life[e, 2] += 1
    if life[e, 2] < -10:
        life[e, 2] = 0.0
        inv[e, _I_ENERGY] += 1
    if life[e, 2] > 30:
        life[e, 2] = 0.0
        inv[e, _I_ENERGY] -= 1
    if inv[e, _I_FOOD] > 0 and inv[e, _I_DRINK] > 0 and (inv[e, _I_ENERGY] > 0 or sleeping):
        life[e, 3] += 2.0 if sleeping else 1.0
    else:
        life[e, 3] -= 0.5 if sleeping else 1.0
    if life[e, 3] > 25:
        life[e, 3] = 0.0
        inv[e, _I_HEALTH] += 1
    if life[e, 3] < -15:
        life[e, 3] = 0.0
        inv[e, _I_HEALTH] = max(0, inv[e, _I_HEALTH] - 1)


# -------------------------------------------------------------------------- balancing


@_kernel
def _balance_kind(
    s: State,
    e: int,
    c: int,
    kind: int,
    count: int,
    material: int,
    spawn_dist: int,
    despawn_dist: int,
    spawn_prob: float,
    despawn_prob: float,
    target_min: float,
    target_max: float,
) -> None:  # pragma: no cover - compiled
    """rlgpt's `balance._balance` for one creature kind in chunk c."""
    h = s.mat.shape[2]
    per_column = -(-h // CHUNK)
    xmin, ymin = (c // per_column) * CHUNK, (c % per_column) * CHUNK
    xmax, ymax = min(xmin + CHUNK, s.mat.shape[1]), min(ymin + CHUNK, h)
    p = s.player[e]
    if count < int(target_min) and _uniform(s, e) < spawn_prob:
        space = 0
        for x in range(xmin, xmax):
            for y in range(ymin, ymax):
                space += s.mat[e, x, y] == material
        pick = _randint(s, e, space)
        for x in range(xmin, xmax):
            for y in range(ymin, ymax):
                if s.mat[e, x, y] == material:
                    if pick == 0:
                        away = abs(x - s.ox[e, p]) + abs(y - s.oy[e, p]) >= spawn_dist
                        if s.objmap[e, x, y] == 0 and away:
                            _add(s, e, kind, x, y, 5 if kind == ZOMBIE else 3)
                        return
                    pick -= 1
    elif count > int(target_max) and _uniform(s, e) < despawn_prob:
        # rlgpt's creature order: by position (crafter's set order follows memory addresses).
        slots, keys = s.candidates[e, 0], s.candidates[e, 1]
        n = 0
        for i in range(1, s.n_slots[e]):
            if s.kind[e, i] == kind and _chunk_of(s, s.ox[e, i], s.oy[e, i]) == c:
                key = s.ox[e, i] * h + s.oy[e, i]
                m = n  # insertion sort: a chunk holds a handful of creatures
                while m > 0 and keys[m - 1] > key:
                    keys[m], slots[m] = keys[m - 1], slots[m - 1]
                    m -= 1
                keys[m], slots[m] = key, i
                n += 1
        i = slots[_randint(s, e, n)]
        if _distance(s, e, i, p) >= despawn_dist:
            _remove(s, e, i)


@_kernel
def _balance(s: State, e: int, light: float) -> None:  # pragma: no cover - compiled
    """crafter's balancing of every chunk, in crafter's chunk order."""
    counts = s.chunk_counts[e]
    counts[:] = 0
    for i in range(1, s.n_slots[e]):
        k = s.kind[e, i]
        if k in (ZOMBIE, SKELETON, COW):
            c = _chunk_of(s, s.ox[e, i], s.oy[e, i])
            counts[c, 0 if k == ZOMBIE else (1 if k == SKELETON else 2)] += 1
    h = s.mat.shape[2]
    per_column = -(-h // CHUNK)
    for n in range(s.n_chunks[e]):
        c = s.chunk_order[e, n]
        xmin, ymin = (c // per_column) * CHUNK, (c % per_column) * CHUNK
        xmax, ymax = min(xmin + CHUNK, s.mat.shape[1]), min(ymin + CHUNK, h)
        grass = 0
        path = 0
        for x in range(xmin, xmax):
            for y in range(ymin, ymax):
                grass += s.mat[e, x, y] == _GRASS
                path += s.mat[e, x, y] == _PATH
        dark = 3.5 - 3 * light
        _balance_kind(
            s, e, c, ZOMBIE, counts[c, 0], _GRASS, 6, 0, 0.3, 0.4, 0.0 if grass < 50 else dark, dark
        )
        _balance_kind(
            s, e, c, SKELETON, counts[c, 1], _PATH, 7, 7, 0.1, 0.1, 0.0 if path < 6 else 1.0, 2.0
        )
        _balance_kind(
            s,
            e,
            c,
            COW,
            counts[c, 2],
            _GRASS,
            5,
            5,
            0.01,
            0.1,
            0.0 if grass < 30 else 1.0,
            1.5 + light,
        )


@_kernel
def _compact(s: State, e: int) -> None:  # pragma: no cover - compiled
    """Renumber the live objects 1.. in order (crafter's object order is kept)."""
    n = 1
    for i in range(1, s.n_slots[e]):
        if s.kind[e, i] == 0:
            continue
        if n != i:
            s.kind[e, n], s.ox[e, n], s.oy[e, n] = s.kind[e, i], s.ox[e, i], s.oy[e, i]
            s.health[e, n], s.counter[e, n] = s.health[e, i], s.counter[e, i]
            s.fx[e, n], s.fy[e, n] = s.fx[e, i], s.fy[e, i]
            s.objmap[e, s.ox[e, n], s.oy[e, n]] = n
            if s.player[e] == i:
                s.player[e] = n
        n += 1
    s.kind[e, n : s.n_slots[e]] = 0
    s.n_slots[e] = n


# ------------------------------------------------------------------------- env step
@_kernel
def _observe(s: State, e: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """The symbolic observation of `CrafterEnv` (one-hot 9x7 view, inventory / 9, facing)."""
    out[:] = 0.0
    p = s.player[e]
    px, py = s.ox[e, p], s.oy[e, p]
    n_channels = _N_CHANNELS
    cell = 0
    for i in range(VIEW[0]):
        for j in range(VIEW[1]):
            x, y = px + i - VIEW[0] // 2, py + j - VIEW[1] // 2
            if _inside(s, x, y):
                ident = np.int64(s.mat[e, x, y])
                slot = s.objmap[e, x, y]
                if slot != 0 and _KIND_SEMANTIC[s.kind[e, slot]] > 0:
                    ident = _KIND_SEMANTIC[s.kind[e, slot]]
                if ident > 0:
                    out[cell * n_channels + ident - 1] = 1.0
            cell += 1
    base = VIEW[0] * VIEW[1] * n_channels
    for k in range(s.inv.shape[1]):
        out[base + k] = np.float32(s.inv[e, k]) / np.float32(9.0)
    fx, fy = s.fx[e, p], s.fy[e, p]
    facing = 0 if fx == -1 else (1 if fx == 1 else (2 if fy == -1 else 3))
    out[base + s.inv.shape[1] + facing] = 1.0


@_kernel
def step_all(
    s: State,
    r: Rules,
    actions: np.ndarray,
    target: int,
    shaping_items: np.ndarray,
    shaping_weights: np.ndarray,
    terminate_on_success: bool,
    episode_length: int,
    obs: np.ndarray,
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    new_unlocks: np.ndarray,
) -> None:  # pragma: no cover - compiled; checked against CrafterEnv by the parity tests
    """One step of every env (`CrafterEnv.step`); `target` is the task's achievement index
    (-1: the score task)."""
    for e in range(actions.shape[0]):
        if s.n_slots[e] > s.kind.shape[1] - _HEADROOM:
            _compact(s, e)
        s.steps[e] += 1
        light = r.daylight[min(s.steps[e], r.daylight.shape[0] - 1)]
        p = s.player[e]
        for i in range(1, s.n_slots[e]):
            k = s.kind[e, i]
            if k == 0 or (i != p and _distance(s, e, i, p) >= REACH):
                continue
            if k == PLAYER:
                _update_player(s, r, e, i, actions[e])
            elif k == COW:
                _update_cow(s, r, e, i)
            elif k == ZOMBIE:
                _update_zombie(s, r, e, i)
            elif k == SKELETON:
                _update_skeleton(s, r, e, i)
            elif k == ARROW:
                _update_arrow(s, r, e, i)
            elif k == PLANT:
                _update_plant(s, e, i)
        if s.steps[e] % 10 == 0:
            _balance(s, e, light)
        health = s.inv[e, _I_HEALTH]
        native = (health - s.last_health[e]) / 10
        s.last_health[e] = health
        new = 0
        for a in range(s.ach.shape[1]):
            if s.ach[e, a] > 0 and not s.unlocked[e, a]:
                s.unlocked[e, a] = True
                new += 1
        if new:
            native += 1.0
        new_unlocks[e] = new
        solved = False
        if target < 0:
            reward = native
        else:
            reward = 0.0
            if not s.task_done[e] and s.ach[e, target] > 0:
                s.task_done[e] = True
                reward += 1.0
            solved = s.task_done[e]
            for k in range(shaping_items.shape[0]):
                count = s.inv[e, shaping_items[k]]
                if count > s.shaping_max[e, k]:
                    reward += shaping_weights[k] * (count - s.shaping_max[e, k])
                    s.shaping_max[e, k] = count
        rewards[e] = reward
        terminated[e] = health <= 0 or (solved and terminate_on_success)
        truncated[e] = not terminated[e] and s.steps[e] >= episode_length
        _observe(s, e, obs[e])


# ------------------------------------------------------------------------- new episode
_INITIAL = np.array([constants.items[n]["initial"] for n in ITEMS], np.int64)
#: Object kind and starting health of the creatures world generation places.
CREATURE_KINDS = {"Cow": (COW, 3), "Zombie": (ZOMBIE, 5), "Skeleton": (SKELETON, 3)}


@_kernel
def _load_world(
    s: State, e: int, materials: np.ndarray, creatures: np.ndarray, keys: np.ndarray, pos: int
) -> None:  # pragma: no cover - compiled
    """A fresh episode in env e: crafter's `Player` at the centre, then the creatures
    (rows: kind, health, x, y) in creation order, and the stream after world generation."""
    # Element loops: an array-to-array assignment may copy, which needs the allocator.
    for x in range(materials.shape[0]):
        for y in range(materials.shape[1]):
            s.mat[e, x, y] = materials[x, y]
    s.objmap[e] = 0
    s.kind[e] = 0
    s.n_slots[e] = 1
    s.n_chunks[e] = 0
    s.chunk_seen[e] = False
    p = _add(s, e, PLAYER, s.mat.shape[1] // 2, s.mat.shape[2] // 2, 0)
    s.player[e] = p
    s.fx[e, p], s.fy[e, p] = 0, 1
    for k in range(creatures.shape[0]):
        _add(s, e, creatures[k, 0], creatures[k, 2], creatures[k, 3], creatures[k, 1])
    for k in range(keys.shape[0]):
        s.mt_key[e, k] = keys[k]
    s.mt_pos[e] = pos
    for k in range(_INITIAL.shape[0]):
        s.inv[e, k] = _INITIAL[k]
    s.ach[e] = 0
    s.sleeping[e] = False
    s.player_last_health[e] = _INITIAL[_I_HEALTH]
    s.life[e] = 0.0
    s.steps[e] = 0
    s.last_health[e] = _INITIAL[_I_HEALTH]
    s.unlocked[e] = False
    s.task_done[e] = False
