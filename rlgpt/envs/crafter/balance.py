"""Crafter's creature balancing: spawn and despawn per chunk, at crafter's rates."""

from __future__ import annotations

from typing import Any

import numpy as np
from crafter import objects


def balance_chunk(
    world: Any, player: objects.Player, chunk: tuple[int, int, int, int], objs: set[Any]
) -> None:
    """Spawn/despawn creatures in one chunk with crafter's rates (see crafter.Env)."""
    light = world.daylight
    _balance(
        world, player, chunk, objs, objects.Zombie, "grass", 6, 0, 0.3, 0.4,
        lambda pos: objects.Zombie(world, pos, player),
        lambda space: (0 if space < 50 else 3.5 - 3 * light, 3.5 - 3 * light),
    )  # fmt: skip
    _balance(
        world, player, chunk, objs, objects.Skeleton, "path", 7, 7, 0.1, 0.1,
        lambda pos: objects.Skeleton(world, pos, player),
        lambda space: (0 if space < 6 else 1, 2),
    )  # fmt: skip
    _balance(
        world, player, chunk, objs, objects.Cow, "grass", 5, 5, 0.01, 0.1,
        lambda pos: objects.Cow(world, pos),
        lambda space: (0 if space < 30 else 1, 1.5 + light),
    )  # fmt: skip


def _balance(
    world: Any,
    player: objects.Player,
    chunk: tuple[int, int, int, int],
    objs: set[Any],
    cls: type,
    material: str,
    spawn_dist: int,
    despawn_dist: int,
    spawn_prob: float,
    despawn_prob: float,
    ctor: Any,
    target_fn: Any,
) -> None:
    """Maybe spawn one `cls` below the chunk's target count, or despawn one above it."""
    xmin, _, ymin, _ = chunk
    random = world.random
    # crafter iterates a set of objects (order depends on memory addresses); sorting by
    # position keeps episodes reproducible from the seed.
    creatures: list[Any] = [obj for obj in objs if isinstance(obj, cls)]
    creatures.sort(key=lambda obj: (int(obj.pos[0]), int(obj.pos[1])))
    mask = world.mask(*chunk, material)
    target_min, target_max = target_fn(mask.sum())
    if len(creatures) < int(target_min) and random.uniform() < spawn_prob:
        xs, ys = np.nonzero(mask)
        i = random.randint(0, len(xs))
        pos = np.array((xs[i] + xmin, ys[i] + ymin))
        empty = world[pos][1] is None
        away = player.distance(pos) >= spawn_dist
        if empty and away:
            world.add(ctor(pos))
    elif len(creatures) > int(target_max) and random.uniform() < despawn_prob:
        obj = creatures[random.randint(0, len(creatures))]
        if player.distance(obj.pos) >= despawn_dist:
            world.remove(obj)
