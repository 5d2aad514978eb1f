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

import numba
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
    out = np.empty(x.size, np.float64)
    _noise_points(perm, grad_index, x, y, float(z), out)
    return out.reshape(shape)


@numba.njit(cache=True)
def _noise_points(
    perm: np.ndarray,
    grad_index: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z: float,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled; checked against crafter's noise by the tests
    # Every lattice vertex whose kernel reaches the point contributes (OpenSimplex picks
    # among them by region, hence the ~1e-4 difference that MARGIN absorbs).
    for p in range(x.size):
        offset = (x[p] + y[p] + z) * _STRETCH
        xsb, ysb, zsb = np.floor(x[p] + offset), np.floor(y[p] + offset), np.floor(z + offset)
        squish = (xsb + ysb + zsb) * SQUISH_CONSTANT_3D
        dx, dy, dz = x[p] - (xsb + squish), y[p] - (ysb + squish), z - (zsb + squish)
        base = dx * dx + dy * dy + dz * dz
        xi, yi, zi = int(xsb), int(ysb), int(zsb)
        total = 0.0
        for r in range(_OFFSETS.shape[0]):
            cx, cy, cz = _CORNERS[r, 0], _CORNERS[r, 1], _CORNERS[r, 2]
            attn = _CORNER_NORM[r] - base + 2.0 * (cx * dx + cy * dy + cz * dz)
            if attn <= 0.0:
                continue
            hx = perm[(xi + _OFFSETS[r, 0]) & 255]
            hy = perm[(hx + yi + _OFFSETS[r, 1]) & 255]
            g = grad_index[(hy + zi + _OFFSETS[r, 2]) & 255]
            attn *= attn
            dot = _GX[g] * (dx - cx) + _GY[g] * (dy - cy) + _GZ[g] * (dz - cz)
            total += attn * attn * dot
        out[p] = total / NORM_CONSTANT_3D


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
    coal_ok, iron_ok, deep = rock & coal_ok, rock & iron_ok, rock & deep  # drawn in rock only
    rock_draw = coal_ok | iron_ok | deep
    tree_draw = field & (fields["tree"] > 0)
    mat = np.full((width, height), ids["grass"], np.uint8)
    mat[cave | tunnels] = ids["path"]
    mat[sand] = ids["sand"]
    mat[water] = ids["water"]
    mat[rock] = ids["stone"]
    mat[lava] = ids["lava"]
    draws = _Draws(world.random, 3 * int(np.count_nonzero(rock_draw | tree_draw)))
    ore = np.array([ids["coal"], ids["iron"], ids["diamond"], ids["tree"]], np.uint8)
    used = _material_draws(tree_draw, coal_ok, iron_ok, deep, draws.values, ore, mat)
    draws.consume(used)
    world._mat_map[...] = mat
    _place_objects(world, player, mat, tunnels, center)


class _Draws:
    """A block of `uniform()` draws taken ahead; `consume(k)` leaves the state after k draws.

    `RandomState.random_sample(n)` yields the same numbers as n calls of `uniform()`, so a
    loop can read them from an array and the random state still ends exactly where crafter's
    one-call-per-draw loop leaves it.
    """

    def __init__(self, random: np.random.RandomState, n: int) -> None:
        self.random = random
        self.saved = random.get_state()
        self.values: np.ndarray = random.random_sample(n)

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
    draws = _Draws(world.random, 3 * int(np.count_nonzero(cow_ok | zombie_ok | skeleton_ok)))
    found = np.empty((width * height, 3), np.int64)
    used, n_found = _creature_draws(cow_ok, zombie_ok, skeleton_ok, draws.values, found)
    draws.consume(used)
    # Creatures draw nothing when built, so adding them after the loop keeps every draw.
    for x, y, kind in found[:n_found].tolist():
        if kind == _COW:
            world.add(objects.Cow(world, (x, y)))
        elif kind == _ZOMBIE:
            world.add(objects.Zombie(world, (x, y), player))
        else:
            world.add(objects.Skeleton(world, (x, y), player))


_COW, _ZOMBIE, _SKELETON = 0, 1, 2


@numba.njit(cache=True)
def _material_draws(
    tree: np.ndarray,
    coal: np.ndarray,
    iron: np.ndarray,
    deep: np.ndarray,
    u: np.ndarray,
    ore: np.ndarray,
    mat: np.ndarray,
) -> int:  # pragma: no cover - compiled; checked against crafter's worlds by the tests
    """crafter's random choices of tree, coal, iron and diamond cells, in crafter's cell
    order (row-major) and draw order; writes `mat`, returns the number of draws used."""
    k = 0
    for x in range(mat.shape[0]):
        for y in range(mat.shape[1]):
            if tree[x, y]:
                k += 1
                if u[k - 1] > 0.8:
                    mat[x, y] = ore[3]
                continue
            if coal[x, y]:
                k += 1
                if u[k - 1] > 0.85:
                    mat[x, y] = ore[0]
                    continue
            if iron[x, y]:
                k += 1
                if u[k - 1] > 0.75:
                    mat[x, y] = ore[1]
                    continue
            if deep[x, y]:
                k += 1
                if u[k - 1] > 0.994:
                    mat[x, y] = ore[2]
    return k


@numba.njit(cache=True)
def _creature_draws(
    cow: np.ndarray, zombie: np.ndarray, skeleton: np.ndarray, u: np.ndarray, found: np.ndarray
) -> tuple[int, int]:  # pragma: no cover - compiled; checked against crafter's worlds
    """crafter's `_set_object` draws for every cell in its order; rows (x, y, kind) go to
    `found`; returns (draws used, creatures found)."""
    k = 0
    n = 0
    for x in range(cow.shape[0]):
        for y in range(cow.shape[1]):
            kind = -1
            if cow[x, y]:
                k += 1
                if u[k - 1] > 0.985:
                    kind = _COW
            if kind < 0 and zombie[x, y]:
                k += 1
                if u[k - 1] > 0.993:
                    kind = _ZOMBIE
            if kind < 0 and skeleton[x, y]:
                k += 1
                if u[k - 1] > 0.95:
                    kind = _SKELETON
            if kind >= 0:
                found[n, 0], found[n, 1], found[n, 2] = x, y, kind
                n += 1
    return k, n


def _generate_scalar(world: Any, player: Any, simplex: Any) -> None:
    """crafter's own per-cell generation with an already-seeded noise object."""
    tunnels = np.zeros(world.area, bool)
    for x in range(world.area[0]):
        for y in range(world.area[1]):
            worldgen._set_material(world, (x, y), player, tunnels, simplex)
    for x in range(world.area[0]):
        for y in range(world.area[1]):
            worldgen._set_object(world, (x, y), player, tunnels)
