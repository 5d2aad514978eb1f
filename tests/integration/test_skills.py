"""Integration tests of the skill API: a code-action chain on 100 real Crafter worlds."""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crafter import engine, objects

from rlgpt.envs.base import OptionInterrupted
from rlgpt.envs.crafter.env import CrafterConfig, CrafterEnv
from rlgpt.envs.crafter.skills import api as skills_api
from rlgpt.envs.crafter.skills.api import MAX_HITS, SkillAPI

SKILLS_DIR = str(Path(skills_api.__file__).parent)

pytestmark = pytest.mark.integration

CHAIN = ("collect_wood", "place_table", "make_wood_pickaxe")


# The recipe knowledge below belongs to the test (as it would to generated code), not the API.
def gather_wood(api: SkillAPI, n: int) -> None:
    """Collect wood until the inventory holds `n`."""
    while api.count("wood") < n:
        if api.seen("tree") and api.move_to("tree"):
            api.do()
        elif not api.explore(20):
            api.act("move_left")


def wood_pickaxe(api: SkillAPI) -> None:
    """Collect wood, place a table, make a wood pickaxe next to it."""
    while "place_table" not in api.achievements():
        gather_wood(api, 2)
        api.place("table")
    while "make_wood_pickaxe" not in api.achievements():
        gather_wood(api, 1)
        if api.move_to("table"):
            api.make("wood_pickaxe")
        else:  # the table is gone (arrows break tables) or out of reach: build another
            gather_wood(api, 3)
            api.place("table")


def _run_seeds(seeds: list[int]) -> list[tuple[int, bool, int]]:
    env = CrafterEnv(CrafterConfig(episode_length=1000, task="crafter:make_wood_pickaxe"))
    results = []
    for seed in seeds:
        env.reset(seed=seed)
        with contextlib.suppress(OptionInterrupted):
            wood_pickaxe(SkillAPI(env, max_steps=1000))
        unlocked = env.achievements
        results.append((seed, all(unlocked[a] > 0 for a in CHAIN), env.episode_steps))
    return results


def test_wood_table_pickaxe_chain_on_100_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        parts = pool.map(_run_seeds, [list(range(0, 100, 2)), list(range(1, 100, 2))])
    results = [r for part in parts for r in part]
    solved = sum(ok for _, ok, _ in results)
    steps = [n for _, ok, n in results if ok]
    with capsys.disabled():
        print(
            f"\nwood -> table -> wood pickaxe: {solved}/100 seeds, median "
            f"{int(np.median(steps))} env steps, {time.perf_counter() - start:.1f} s"
        )
    assert solved >= 95, [seed for seed, ok, _ in results if not ok]


def test_step_budget_and_episode_end_interrupt() -> None:
    env = CrafterEnv(CrafterConfig(episode_length=1000))
    env.reset(seed=0)
    api = SkillAPI(env, max_steps=3)
    for _ in range(3):
        api.noop()
    with pytest.raises(OptionInterrupted) as err:
        api.noop()
    assert err.value.reason == "step_budget"
    short = CrafterEnv(CrafterConfig(episode_length=2))
    short.reset(seed=0)
    api = SkillAPI(short)
    api.noop()
    with pytest.raises(OptionInterrupted) as err:
        api.noop()
    assert err.value.reason == "episode_end"


def test_custom_stepper_receives_every_step() -> None:
    env = CrafterEnv()
    env.reset(seed=1)
    taken: list[int] = []

    def stepper(action: int) -> None:
        taken.append(action)
        env.step(action)

    api = SkillAPI(env, step=stepper)
    assert api.explore(5)
    assert len(taken) == 5 and env.episode_steps == 5
    api.act("noop")
    assert taken[-1] == 0 and env.episode_steps == 6


def test_skills_see_only_what_was_seen() -> None:
    env = CrafterEnv()
    env.reset(seed=3)
    oracle = CrafterEnv(CrafterConfig(privileged=True))
    oracle.reset(seed=3)
    full, _ = oracle.full_map()
    x, y = env.player_pos
    far_trees = [
        (int(tx), int(ty))
        for tx, ty in np.argwhere(full == env.name_to_id["tree"])
        if abs(tx - x) > 4 or abs(ty - y) > 3
    ]
    api = SkillAPI(env)
    known = {tuple(p) for p in env.memory.positions("tree").tolist()}
    assert far_trees and not known & set(far_trees)
    privileged = SkillAPI(oracle)
    assert privileged.nearest("tree") is not None
    assert privileged.seen("water") == bool((full == env.name_to_id["water"]).any())
    before = env.memory.known_count()
    api.explore(10)
    assert env.memory.known_count() > before


def test_perception_and_interaction_basics() -> None:
    env = CrafterEnv()
    env.reset(seed=0)
    api = SkillAPI(env)
    assert api.status() == {"health": 9, "food": 9, "drink": 9, "energy": 9}
    assert api.position() == env.player_pos and api.count("wood") == 0 and not api.has("wood")
    assert api.facing() in env.id_to_name
    assert sum(api.nearby(radius=1).values()) == 8  # the 3x3 around the player, minus itself
    assert not api.make("wood_pickaxe")  # no wood: refused without stepping
    assert not api.place("table") and env.episode_steps == 0
    assert not api.sleep()  # energy full
    with pytest.raises(ValueError):
        api.move_to("unicorn")
    with pytest.raises(ValueError):
        api.act("fly")


def test_move_to_reaches_and_faces_a_seen_target() -> None:
    env = CrafterEnv()
    env.reset(seed=0)  # a tree is in the first view
    api = SkillAPI(env)
    assert api.seen("tree") and not api.seen("diamond")
    assert not api.move_to("diamond") and env.episode_steps == 0  # unseen: no steps taken
    assert api.move_to("tree", max_steps=30)
    x, y = env.player_pos
    fx, fy = env.facing
    assert env.player.world[(x + fx, y + fy)][0] == "tree"  # the world agrees, not just the API
    assert 0 < env.episode_steps <= 30
    before = env.memory.known_count()
    assert api.explore(10)
    assert env.memory.known_count() > before


@contextlib.contextmanager
def skill_reads_of_game_objects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every attribute the skill package's own code reads on crafter's world or objects.

    Skill code must see the game only through the env's view, inventory and status
    accessors, so it never needs such a read; one would be, e.g., a creature's health.
    """
    reads: list[str] = []
    for cls in (objects.Object, engine.World):
        original = cls.__getattribute__

        def recording(self: Any, name: str, _original: Any = original) -> Any:
            if sys._getframe(1).f_code.co_filename.startswith(SKILLS_DIR):
                reads.append(f"{type(self).__name__}.{name}")
            return _original(self, name)

        monkeypatch.setattr(cls, "__getattribute__", recording)
    yield reads
    monkeypatch.undo()


def test_fights_end_on_what_is_seen_and_read_no_creature_health(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = CrafterEnv()
    env.reset(seed=1)
    with skill_reads_of_game_objects(monkeypatch) as reads:
        # The recorder works: a read written in the skill package is caught.
        cow = objects.Cow(env.player.world, (0, 0))
        exec(compile("cow.health", f"{SKILLS_DIR}/probe.py", "exec"), {"cow": cow})
        assert reads == ["Cow.health"]
        reads.clear()

        api = SkillAPI(env)
        x, y = env.player_pos
        fx, fy = env.facing
        zombie = objects.Zombie(env.player.world, (x + fx, y + fy), env.player)
        env.player.world.add(zombie)
        api.noop()  # the view (and the map) now show the zombie
        assert api.face("zombie")
        start = env.episode_steps
        assert api.do()
        # Unarmed, a zombie takes several hits; do() kept hitting while it was seen there.
        assert 1 < env.episode_steps - start <= MAX_HITS
        assert zombie.health <= 0 and api.facing() != "zombie"

        env.reset(seed=0)  # a cow is in the first view
        api = SkillAPI(env)
        assert api.move_to("cow")
        start = env.episode_steps
        assert api.do() and api.facing() != "cow"
        assert 1 <= env.episode_steps - start <= MAX_HITS
        env.reset(seed=1)
        api = SkillAPI(env)
        assert api.move_to("cow")
        start = env.episode_steps
        api.act("do")  # one hit; whether it "changed" anything depends only on what is seen
        assert env.episode_steps - start == 1
    assert reads == []
