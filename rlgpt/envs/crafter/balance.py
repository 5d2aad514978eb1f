"""Crafter's creature balancing: spawn and despawn per chunk, at crafter's rates."""

from __future__ import annotations

from typing import Any

import numpy as np
from crafter import objects


def balance_chunk(
    world: Any, player: objects.Player, chunk: tuple[int, int, int, int], objs: set[Any]
) -> None:
    """Spawn/despawn creatures in one chunk with crafter's rates (see crafter.Env).

    It runs for every chunk every 10 steps, so the creatures are grouped in one pass and
    the grass mask is computed once for zombies and cows (balancing adds and removes
    creatures, never changes materials); the random draws are crafter's, in its order.
    """
    light = world.daylight
    groups: dict[type, list[Any]] = {objects.Zombie: [], objects.Skeleton: [], objects.Cow: []}
    for obj in objs:
        group = groups.get(type(obj))
        if group is not None:
            group.append(obj)
    grass = world.mask(*chunk, "grass")
    _balance(
        world, player, chunk, groups[objects.Zombie], grass, 6, 0, 0.3, 0.4,
        lambda pos: objects.Zombie(world, pos, player),
        lambda space: (0 if space < 50 else 3.5 - 3 * light, 3.5 - 3 * light),
    )  # fmt: skip
    _balance(
        world, player, chunk, groups[objects.Skeleton], world.mask(*chunk, "path"), 7, 7,
        0.1, 0.1, lambda pos: objects.Skeleton(world, pos, player),
        lambda space: (0 if space < 6 else 1, 2),
    )  # fmt: skip
    _balance(
        world, player, chunk, groups[objects.Cow], grass, 5, 5, 0.01, 0.1,
        lambda pos: objects.Cow(world, pos),
        lambda space: (0 if space < 30 else 1, 1.5 + light),
    )  # fmt: skip


def _balance(
    world: Any,
    player: objects.Player,
    chunk: tuple[int, int, int, int],
    creatures: list[Any],
    mask: np.ndarray,
    spawn_dist: int,
    despawn_dist: int,
    spawn_prob: float,
    despawn_prob: float,
    ctor: Any,
    target_fn: Any,
) -> None:
    """Maybe spawn one creature below the chunk's target count, or despawn one above it."""
    xmin, _, ymin, _ = chunk
    random = world.random
    target_min, target_max = target_fn(int(np.count_nonzero(mask)))
    if len(creatures) < int(target_min) and random.uniform() < spawn_prob:
        xs, ys = np.nonzero(mask)
        i = random.randint(0, len(xs))
        pos = np.array((xs[i] + xmin, ys[i] + ymin))
        empty = world[pos][1] is None
        away = player.distance(pos) >= spawn_dist
        if empty and away:
            world.add(ctor(pos))
    elif len(creatures) > int(target_max) and random.uniform() < despawn_prob:
        # crafter iterates a set of objects (order depends on memory addresses); sorting by
        # position keeps episodes reproducible from the seed.
        creatures.sort(key=lambda obj: (int(obj.pos[0]), int(obj.pos[1])))
        obj = creatures[random.randint(0, len(creatures))]
        if player.distance(obj.pos) >= despawn_dist:
            world.remove(obj)
