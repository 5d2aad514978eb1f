"""Crafter worlds generated one episode ahead in a helper process.

A reset spends most of its time in world generation (about 0.03 s, a quarter of plain-PPO
training time while young policies die within ~175 steps). The next world of an env is
known in advance (it follows from the env's seed and episode index), so a helper process
generates it while the env is still playing, and the reset only replays the result: the
material map, the creatures in creation order, and the world's random state afterwards.
The replayed world is the one `generate_world` builds, to the last random draw.

One helper serves every env of a process; if it cannot start or dies, envs fall back to
generating their worlds themselves.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import multiprocessing
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from crafter import constants, engine, objects

from rlgpt.envs.crafter.worldgen import generate_world
from rlgpt.logging import get_logger

log = get_logger("rlgpt.envs.crafter.prefetch")

_CREATURES: dict[str, type] = {
    "Cow": objects.Cow,
    "Zombie": objects.Zombie,
    "Skeleton": objects.Skeleton,
}


@dataclass(frozen=True)
class WorldRecipe:
    """What world generation leaves behind, enough to rebuild the world exactly."""

    world_seed: int
    materials: np.ndarray
    creatures: list[tuple[str, int, int]]
    random_state: tuple[Any, ...]


def new_world(area: tuple[int, int]) -> Any:
    """An empty crafter World as `crafter.Env` makes it (chunks of 12x12)."""
    return engine.World(area, constants.materials, (12, 12))


def start_world(world: Any, world_seed: int) -> Any:
    """Reset `world` for `world_seed` and add the player at the centre; returns the player."""
    world.reset(seed=world_seed)
    center = (world.area[0] // 2, world.area[1] // 2)
    player = objects.Player(world, center)
    world.add(player)
    return player


def make_recipe(area: tuple[int, int], world_seed: int) -> WorldRecipe:
    """Generate the world of `world_seed` and record it."""
    world = new_world(area)
    player = start_world(world, world_seed)
    generate_world(world, player)
    creatures = []
    for obj in world.objects:
        if obj is player:
            continue
        name = type(obj).__name__
        if name not in _CREATURES:
            raise TypeError(f"world generation made an unexpected object {name}")
        creatures.append((name, int(obj.pos[0]), int(obj.pos[1])))
    return WorldRecipe(world_seed, world._mat_map.copy(), creatures, world.random.get_state())


def replay_recipe(world: Any, player: Any, recipe: WorldRecipe) -> None:
    """Fill a started world (see `start_world`) with the recipe's terrain and creatures."""
    world._mat_map[...] = recipe.materials
    for name, x, y in recipe.creatures:
        cls = _CREATURES[name]
        pos = (x, y)
        world.add(cls(world, pos) if cls is objects.Cow else cls(world, pos, player))
    # Last, so that nothing above can have drawn from the world's random stream.
    world.random.set_state(recipe.random_state)


def _serve(remote: Connection, area: tuple[int, int]) -> None:
    """Helper loop: answer each (request id, world seed) with the recipe of that world."""
    try:
        while True:
            message = remote.recv()
            if message is None:
                break
            request, world_seed = message
            remote.send((request, make_recipe(area, world_seed)))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass  # the env process went away
    finally:
        remote.close()


#: Unanswered requests one helper may have: their answers fit in the pipe's buffer.
MAX_IN_FLIGHT = 8


class WorldPrefetcher:
    """One helper process that generates worlds for any number of envs of one area."""

    def __init__(self, area: tuple[int, int]) -> None:
        context = multiprocessing.get_context("spawn")  # a clean process: no torch, no locks
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, area), daemon=True, name="rlgpt-world-prefetch"
        )
        self._process.start()
        child.close()
        self.owner = os.getpid()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._waiting: set[int] = set()
        self._ready: dict[int, WorldRecipe] = {}
        self._dropped: set[int] = set()

    def request(self, world_seed: int) -> int:
        """Ask for the world of `world_seed`; returns the ticket to `take` it with.

        At most `MAX_IN_FLIGHT` requests are unanswered: beyond that this waits for an
        answer first. Otherwise both sides could block on a full pipe at once (many envs
        asking ahead while the helper's answers wait to be read).
        """
        with self._lock:
            while self._conn.poll() or len(self._waiting) >= MAX_IN_FLIGHT:
                self._receive()
            ticket = next(self._ids)
            self._conn.send((ticket, world_seed))
            self._waiting.add(ticket)
            return ticket

    def take(self, ticket: int) -> WorldRecipe:
        """The recipe of a ticket, waiting for it if needed (other answers are kept)."""
        with self._lock:
            while ticket not in self._ready:
                if ticket not in self._waiting:
                    raise KeyError(f"unknown or already taken ticket {ticket}")
                self._receive()
            return self._ready.pop(ticket)

    def _receive(self) -> None:
        answered, recipe = self._conn.recv()
        self._waiting.discard(answered)
        if answered in self._dropped:
            self._dropped.discard(answered)
        else:
            self._ready[answered] = recipe

    def drop(self, ticket: int) -> None:
        """Forget a ticket that will not be taken (its answer is thrown away on arrival)."""
        with self._lock:
            if self._ready.pop(ticket, None) is None and ticket in self._waiting:
                self._dropped.add(ticket)

    def close(self) -> None:
        """Stop the helper."""
        with contextlib.suppress(BrokenPipeError, OSError):  # already gone
            self._conn.send(None)
        self._process.join(2.0)
        if self._process.is_alive():
            self._process.terminate()


_PREFETCHERS: dict[tuple[int, int], WorldPrefetcher | None] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_prefetcher(area: tuple[int, int]) -> WorldPrefetcher | None:
    """This process's helper for `area`, started on first use; None if it cannot start."""
    with _REGISTRY_LOCK:
        known = _PREFETCHERS.get(area)
        if known is not None and known.owner != os.getpid():
            # A forked child must not share its parent's pipe: it gets a helper of its own.
            del _PREFETCHERS[area]
        if area not in _PREFETCHERS:
            try:
                prefetcher: WorldPrefetcher | None = WorldPrefetcher(area)
                atexit.register(prefetcher.close)  # type: ignore[union-attr]
            except (AssertionError, OSError, RuntimeError) as exc:
                # e.g. a daemonic worker process, which may not start children
                log.warning("world_prefetch_unavailable", error=repr(exc))
                prefetcher = None
            _PREFETCHERS[area] = prefetcher
        return _PREFETCHERS[area]


def forget_prefetcher(area: tuple[int, int]) -> None:
    """Stop using a failed helper: envs of this process generate their own worlds from now on."""
    with _REGISTRY_LOCK:
        broken = _PREFETCHERS.get(area)
        _PREFETCHERS[area] = None
    if broken is not None:
        broken.close()


class WorldQueue:
    """One env's next worlds, asked for several episodes ahead (for envs that finish
    episodes faster than one world generation)."""

    def __init__(self, area: tuple[int, int], depth: int = 1) -> None:
        self.area = area
        self.depth = depth
        self._pending: collections.deque[tuple[int, WorldPrefetcher, int]] = collections.deque()

    def take(self, world_seed: int, upcoming: Callable[[int], int]) -> WorldRecipe | None:
        """The world of `world_seed` if it was asked for (else None: generate it here), then
        ask for the next `depth` worlds: `upcoming(k)` is the world seed k episodes later."""
        recipe = None
        if self._pending and self._pending[0][0] == world_seed:
            _, prefetcher, ticket = self._pending.popleft()
            recipe = self._collect(prefetcher, ticket)
        else:  # another sequence of worlds (a new seed): forget the old one
            for _, prefetcher, ticket in self._pending:
                prefetcher.drop(ticket)
            self._pending.clear()
        helper = shared_prefetcher(self.area)
        if helper is None:
            return recipe
        asked = {seed for seed, _, _ in self._pending}
        try:
            for k in range(1, self.depth + 1):
                seed = upcoming(k)
                if seed not in asked:
                    self._pending.append((seed, helper, helper.request(seed)))
        except (EOFError, OSError) as exc:  # the helper died (or never ran)
            log.warning("world_prefetch_failed", error=repr(exc))
            forget_prefetcher(self.area)
            self._pending.clear()
        return recipe

    def _collect(self, prefetcher: WorldPrefetcher, ticket: int) -> WorldRecipe | None:
        if prefetcher.owner != os.getpid():
            return None  # asked for by the parent of this forked process
        try:
            return prefetcher.take(ticket)
        except (EOFError, OSError, KeyError) as exc:
            log.warning("world_prefetch_failed", error=repr(exc))
            forget_prefetcher(self.area)
            self._pending.clear()
            return None


class NextWorld:
    """One env's request for the world of its next episode, asked for one reset ahead."""

    def __init__(self, area: tuple[int, int]) -> None:
        self.area = area
        # (world seed, helper, ticket) of the next world asked for
        self._pending: tuple[int, WorldPrefetcher, int] | None = None

    def request(self, world_seed: int) -> None:
        """Have the world of `world_seed` generated in the helper process."""
        prefetcher = shared_prefetcher(self.area)
        if prefetcher is None:
            return
        try:
            self._pending = (world_seed, prefetcher, prefetcher.request(world_seed))
        except (EOFError, OSError) as exc:  # BrokenPipeError: the helper died (or never ran)
            log.warning("world_prefetch_failed", error=repr(exc))
            forget_prefetcher(self.area)

    def take(self, world_seed: int) -> WorldRecipe | None:
        """The prefetched world when it is this one; None when there is none (or it is stale)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        seed, prefetcher, ticket = pending
        if prefetcher.owner != os.getpid():
            return None  # asked for by the parent of this forked process
        try:
            recipe = prefetcher.take(ticket)
        except (EOFError, OSError, KeyError) as exc:
            log.warning("world_prefetch_failed", error=repr(exc))
            forget_prefetcher(self.area)
            return None
        # A reset with an explicit seed starts another sequence of worlds.
        return recipe if seed == world_seed else None
