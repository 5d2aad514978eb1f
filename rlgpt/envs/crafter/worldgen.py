"""Fast Crafter world generation that yields exactly crafter's worlds for the same world seed.

crafter evaluates OpenSimplex noise point by point (about 26,000 pure-Python calls per
world). Here every noise field is evaluated for the whole grid at once with numpy. The
array version sums the contributions of all lattice vertices in range, which can differ
from crafter's vertex choice by up to ~1e-4; so every cell whose terrain decision lies
within `MARGIN` of a threshold is recomputed with crafter's own scalar noise. The
random draws then happen in crafter's order, so the world and the world's random state
afterwards are identical to `crafter.worldgen.generate_world`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import opensimplex
from crafter import constants, objects, worldgen
from opensimplex.opensimplex import GRADIENTS_3D, NORM_CONSTANT_3D, SQUISH_CONSTANT_3D

_GRADIENTS = np.array(GRADIENTS_3D, np.float64).reshape(-1, 3)
_GX, _GY, _GZ = (np.ascontiguousarray(_GRADIENTS[:, c]) for c in range(3))
_STRETCH = -1.0 / 6
# Several times the largest difference measured between the two noise versions (1e-4).
MARGIN = 1e-3
# Lattice offsets (from the stretched floor) whose kernel can reach a point of the cell.
_OFFSETS = np.array(
    [
        (-1, 0, 1), (-1, 1, 0), (-1, 1, 1), (0, -1, 1), (0, 0, 0), (0, 0, 1), (0, 0, 2),
        (0, 1, -1), (0, 1, 0), (0, 1, 1), (0, 1, 2), (0, 2, 0), (0, 2, 1), (1, -1, 0),
        (1, -1, 1), (1, 0, -1), (1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 1, -1), (1, 1, 0),
        (1, 1, 1), (1, 2, 0), (2, 0, 0), (2, 0, 1), (2, 1, 0),
    ],
    np.int64,
)  # fmt: skip


# Each lattice offset as a point: d = d0 - c, so |d|^2 = |d0|^2 - 2 d0.c + |c|^2 for all 26
# at once with one small matrix product (rounding differs from crafter's only at ~1e-16).
_CORNERS = _OFFSETS.astype(np.float64) + (_OFFSETS.sum(axis=1, keepdims=True) * SQUISH_CONSTANT_3D)
_CORNER_NORM = 2.0 - (_CORNERS**2).sum(axis=1)


def noise3_grid(simplex: Any, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
    """OpenSimplex 3D noise at many points (within ~1e-4 of `simplex.noise3d`)."""
    perm = np.asarray(simplex._perm, np.int64)
    grad_index = np.asarray(simplex._perm_grad_index_3D, np.int64) // 3
    shape = np.shape(x)
    x, y = np.ravel(x).astype(np.float64), np.ravel(y).astype(np.float64)
    zz = np.full_like(x, float(z))
    offset = (x + y + zz) * _STRETCH
    xsb, ysb, zsb = np.floor(x + offset), np.floor(y + offset), np.floor(zz + offset)
    squish = (xsb + ysb + zsb) * SQUISH_CONSTANT_3D
    d0 = np.stack([x - (xsb + squish), y - (ysb + squish), zz - (zsb + squish)])
    attn = _CORNER_NORM[:, None] - (d0 * d0).sum(axis=0) + 2.0 * (_CORNERS @ d0)
    # Only vertices whose kernel reaches the point contribute: hash and gather just those
    # (about a fifth of the 26 x N pairs).
    row, col = np.nonzero(attn > 0)
    xi, yi, zi = xsb.astype(np.int64)[col], ysb.astype(np.int64)[col], zsb.astype(np.int64)[col]
    oi, oj, ok = _OFFSETS[row, 0], _OFFSETS[row, 1], _OFFSETS[row, 2]
    index = grad_index[(perm[(perm[(xi + oi) & 255] + yi + oj) & 255] + zi + ok) & 255]
    live = attn[row, col]
    live *= live
    live *= live
    corner = _CORNERS[row]
    dot = _GX[index] * (d0[0, col] - corner[:, 0])
    dot += _GY[index] * (d0[1, col] - corner[:, 1])
    dot += _GZ[index] * (d0[2, col] - corner[:, 2])
    total = np.bincount(col, weights=live * dot, minlength=x.size)
    return (total / NORM_CONSTANT_3D).reshape(shape)


def _noise(simplex: Any, x: Any, y: Any, z: float, size: float) -> Any:
    if isinstance(x, np.ndarray):
        return noise3_grid(simplex, x / size, y / size, z)
    return simplex.noise3d(x / size, y / size, z)


def _base_fields(simplex: Any, xs: Any, ys: Any, center: tuple[int, int]) -> dict[str, Any]:
    """start, water and mountain of `_set_material`, in crafter's arithmetic order."""
    n = _noise
    dist = np.sqrt((xs - center[0]) ** 2 + (ys - center[1]) ** 2)
    start = 4 - dist
    start = start + 2 * n(simplex, xs, ys, 8, 3)
    start = 1 / (1 + np.exp(-start))
    water = (0 + 1 * n(simplex, xs, ys, 3, 15)) + 0.15 * n(simplex, xs, ys, 3, 5) + 0.1
    water = water - 2 * start
    mountain = ((0 + 1 * n(simplex, xs, ys, 0, 15)) + 0.3 * n(simplex, xs, ys, 0, 5)) / (1 + 0.3)
    mountain = mountain - (4 * start + 0.3 * water)
    return {"start": start, "water": water, "mountain": mountain}


# The other noise fields: (x scale, y scale, z, size) as crafter calls them.
_DETAIL: dict[str, tuple[float, float, float, float]] = {
    "cave": (1, 1, 6, 7),
    "htunnel": (2, 1 / 5, 7, 3),
    "vtunnel": (1 / 5, 2, 7, 3),
    "coal": (1, 1, 1, 8),
    "iron": (1, 1, 2, 6),
    "lava": (1, 1, 6, 5),
    "sand": (1, 1, 4, 9),
    "tree": (1, 1, 5, 7),
}


def _detail(simplex: Any, name: str, x: Any, y: Any) -> Any:
    sx, sy, z, size = _DETAIL[name]
    # crafter writes 2 * x and y / 5; reproduce the same operations.
    x = 2 * x if sx == 2 else (x / 5 if sx == 1 / 5 else x)
    y = 2 * y if sy == 2 else (y / 5 if sy == 1 / 5 else y)
    return _noise(simplex, x, y, z, size)


def _fields(simplex: Any, xs: Any, ys: Any, center: tuple[int, int]) -> dict[str, Any]:
    """All noise-derived quantities of `_set_material` at the given points."""
    out = _base_fields(simplex, xs, ys, center)
    for name in _DETAIL:
        out[name] = _detail(simplex, name, xs, ys)
    return out


_THRESHOLDS: dict[str, tuple[float, ...]] = {
    "start": (0.5,),
    "water": (0.25, 0.35, 0.3),
    "mountain": (0.15, 0.3, 0.18),
    "cave": (0.15,),
    "htunnel": (0.4,),
    "vtunnel": (0.4,),
    "coal": (0.0,),
    "iron": (0.4,),
    "lava": (0.35,),
    "sand": (-0.2,),
    "tree": (0.0,),
}


def generate_world(world: Any, player: Any) -> None:
    """Fill `world` with terrain and creatures exactly as `crafter.worldgen.generate_world`."""
    random = world.random
    simplex = opensimplex.OpenSimplex(seed=random.randint(0, 2**31 - 1))
    if not hasattr(simplex, "_perm_grad_index_3D"):  # another opensimplex release
        _generate_scalar(world, player, simplex)
        return
    width, height = world.area
    center = (int(player.pos[0]), int(player.pos[1]))
    xs, ys = np.meshgrid(np.arange(width), np.arange(height), indexing="ij")
    xs, ys = xs.astype(np.int64), ys.astype(np.int64)
    fields = _base_fields(simplex, xs, ys, center)
    # Detail fields only matter where crafter would look at them (with a safety margin).
    lowland = fields["start"] <= 0.5 + MARGIN
    mountain = lowland & (fields["mountain"] > 0.15 - MARGIN)
    flat = lowland & (fields["mountain"] <= 0.15 + MARGIN)
    regions = {
        "sand": flat & (fields["water"] > 0.25 - MARGIN) & (fields["water"] <= 0.35 + MARGIN),
        "tree": flat & (fields["water"] <= 0.3 + MARGIN),
    }
    for name in _DETAIL:
        where = regions.get(name, mountain)
        values = np.full((width, height), np.inf)  # never near a threshold
        if where.any():
            values[where] = _detail(simplex, name, xs[where], ys[where])
        fields[name] = values
    near = {
        name: np.logical_or.reduce([np.abs(fields[name] - limit) < MARGIN for limit in limits])
        for name, limits in _THRESHOLDS.items()
    }
    for name in _DETAIL:
        fields[name][np.isinf(fields[name])] = 0.0
    # A value farther than MARGIN from all its thresholds decides as crafter's would, so only
    # the near ones are recomputed with crafter's scalar noise: the three coupled base fields
    # together, a detail field on its own.
    base_near = near["start"] | near["water"] | near["mountain"]
    for x, y in np.argwhere(base_near).tolist():
        exact = _base_fields(simplex, x, y, center)
        for name, value in exact.items():
            fields[name][x, y] = float(value)
    for name in _DETAIL:
        for x, y in np.argwhere(near[name]).tolist():
            fields[name][x, y] = float(_detail(simplex, name, x, y))
    ids = world._mat_ids
    start, wat, mount = fields["start"], fields["water"], fields["mountain"]
    # crafter's decision chain of `_set_material`, as masks; numpy compares float64 exactly
    # as Python does. Only cells that draw random numbers go through the loop below.
    rest = start <= 0.5
    rocky = rest & (mount > 0.15)
    cave = rocky & (fields["cave"] > 0.15) & (mount > 0.3)
    tunnels = rocky & ~cave & ((fields["htunnel"] > 0.4) | (fields["vtunnel"] > 0.4))
    rock = rocky & ~cave & ~tunnels
    low = rest & ~rocky
    sand = low & (wat > 0.25) & (wat <= 0.35) & (fields["sand"] > -0.2)
    water = low & ~sand & (wat > 0.3)
    field = low & ~sand & ~water
    coal_ok, iron_ok, deep = fields["coal"] > 0, fields["iron"] > 0.4, mount > 0.18
    lava = rock & (mount > 0.3) & (fields["lava"] > 0.35)
    rock_draw = rock & (coal_ok | iron_ok | deep)
    tree_draw = field & (fields["tree"] > 0)
    mat = np.full((width, height), ids["grass"], np.uint8)
    mat[cave | tunnels] = ids["path"]
    mat[sand] = ids["sand"]
    mat[water] = ids["water"]
    mat[rock] = ids["stone"]
    mat[lava] = ids["lava"]
    cells = np.argwhere(rock_draw | tree_draw).tolist()  # row-major: crafter's cell order
    if cells:
        draws = _Draws(world.random, 3 * len(cells))
        u = draws.values
        k = 0
        coal_l, iron_l, deep_l = coal_ok.tolist(), iron_ok.tolist(), deep.tolist()
        tree_l = tree_draw.tolist()
        coal, iron, diamond, tree = ids["coal"], ids["iron"], ids["diamond"], ids["tree"]
        for x, y in cells:
            if tree_l[x][y]:
                k += 1
                if u[k - 1] > 0.8:
                    mat[x, y] = tree
                continue
            if coal_l[x][y]:
                k += 1
                if u[k - 1] > 0.85:
                    mat[x, y] = coal
                    continue
            if iron_l[x][y]:
                k += 1
                if u[k - 1] > 0.75:
                    mat[x, y] = iron
                    continue
            if deep_l[x][y]:
                k += 1
                if u[k - 1] > 0.994:
                    mat[x, y] = diamond
        draws.consume(k)
    world._mat_map[...] = mat
    _place_objects(world, player, mat, tunnels, center)


class _Draws:
    """A block of `uniform()` draws taken ahead; `consume(k)` leaves the state after k draws.

    `RandomState.random_sample(n)` yields the same numbers as n calls of `uniform()`, so a
    loop can read them from a list and the random state still ends exactly where crafter's
    one-call-per-draw loop leaves it.
    """

    def __init__(self, random: np.random.RandomState, n: int) -> None:
        self.random = random
        self.saved = random.get_state()
        self.values: list[float] = random.random_sample(n).tolist()

    def consume(self, k: int) -> None:
        self.random.set_state(self.saved)
        if k:
            self.random.random_sample(k)


def _place_objects(
    world: Any, player: Any, mat: np.ndarray, tunnels: np.ndarray, center: tuple[int, int]
) -> None:
    """crafter's `_set_object` for every cell, in crafter's order."""
    ids = world._mat_ids
    walkable = np.isin(mat, [ids[m] for m in constants.walkable])
    grass, path = ids["grass"], ids["path"]
    width, height = world.area
    cx, cy = center
    # sqrt is correctly rounded, so the array version equals crafter's per-cell np.sqrt.
    xs, ys = np.meshgrid(np.arange(width) - cx, np.arange(height) - cy, indexing="ij")
    dist = np.sqrt(xs**2 + ys**2)
    cow_ok = walkable & (dist > 3) & (mat == grass)
    zombie_ok = walkable & (dist > 10)
    skeleton_ok = walkable & (mat == path) & tunnels
    cells = np.argwhere(cow_ok | zombie_ok | skeleton_ok).tolist()
    if not cells:
        return
    cow_l, zombie_l, skeleton_l = cow_ok.tolist(), zombie_ok.tolist(), skeleton_ok.tolist()
    draws = _Draws(world.random, 3 * len(cells))
    u = draws.values
    k = 0
    found: list[tuple[int, int, str]] = []
    for x, y in cells:
        if cow_l[x][y]:
            k += 1
            if u[k - 1] > 0.985:
                found.append((x, y, "cow"))
                continue
        if zombie_l[x][y]:
            k += 1
            if u[k - 1] > 0.993:
                found.append((x, y, "zombie"))
                continue
        if skeleton_l[x][y]:
            k += 1
            if u[k - 1] > 0.95:
                found.append((x, y, "skeleton"))
    draws.consume(k)
    # Creatures draw nothing when built, so adding them after the loop keeps every draw.
    for x, y, kind in found:
        if kind == "cow":
            world.add(objects.Cow(world, (x, y)))
        elif kind == "zombie":
            world.add(objects.Zombie(world, (x, y), player))
        else:
            world.add(objects.Skeleton(world, (x, y), player))


def _generate_scalar(world: Any, player: Any, simplex: Any) -> None:
    """crafter's own per-cell generation with an already-seeded noise object."""
    tunnels = np.zeros(world.area, bool)
    for x in range(world.area[0]):
        for y in range(world.area[1]):
            worldgen._set_material(world, (x, y), player, tunnels, simplex)
    for x in range(world.area[0]):
        for y in range(world.area[1]):
            worldgen._set_object(world, (x, y), player, tunnels)
