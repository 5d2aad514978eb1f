"""Integration tests of the Crafter env and adapter on the real game."""

from __future__ import annotations

import subprocess
import sys

import crafter
import numpy as np
import pytest
from crafter import constants, engine, objects, worldgen
from stable_baselines3.common.env_checker import check_env

from rlgpt.envs.base import EnvAdapter, EnvSettings, UnknownTaskError
from rlgpt.envs.crafter.adapter import CrafterAdapter
from rlgpt.envs.crafter.env import CrafterConfig, CrafterEnv
from rlgpt.envs.crafter.prefetch import MAX_IN_FLIGHT, WorldPrefetcher, shared_prefetcher
from rlgpt.envs.crafter.skills.api import SkillAPI
from rlgpt.envs.crafter.worldgen import generate_world

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("observation", ["symbolic", "pixels"])
def test_adapter_env_passes_sb3_check(observation: str) -> None:
    adapter = CrafterAdapter()
    env = adapter.make_env(
        adapter.task("crafter:score"),
        EnvSettings(observation=observation, pixel_size=64),  # type: ignore[arg-type]
    )
    check_env(env, skip_render_check=False)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(info) >= {"inventory", "achievements", "discount", "player_pos", "task_success"}
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_short_episode_truncates_not_terminates() -> None:
    env = CrafterEnv(CrafterConfig(episode_length=5))
    env.reset(seed=1)
    for _ in range(4):
        _, _, terminated, truncated, info = env.step(0)
        assert not terminated and not truncated
    _, _, terminated, truncated, info = env.step(0)
    assert truncated and not terminated
    assert info["env_steps"] == 1 and "semantic" not in info


def test_death_terminates_with_zero_discount() -> None:
    env = CrafterEnv(CrafterConfig(episode_length=5))
    env.reset(seed=2)
    env.player.health = 0
    _, reward, terminated, truncated, info = env.step(0)
    assert terminated and not truncated
    assert info["discount"] == 0.0
    assert reward == pytest.approx(-0.9)  # native score reward: health delta / 10


def test_task_reward_success_and_shaping_paid_once() -> None:
    env = CrafterEnv(CrafterConfig(task="crafter:place_table", shaping=(("wood", 0.1),)))
    env.reset(seed=3)
    env.player.inventory["wood"] = 2
    _, reward, terminated, _, info = env.step(0)
    assert reward == pytest.approx(0.2) and not terminated and not info["task_success"]
    env.player.inventory["wood"] = 0
    env.step(0)
    env.player.inventory["wood"] = 2  # regaining units already paid for earns nothing
    _, reward, _, _, _ = env.step(0)
    assert reward == 0.0
    env.player.achievements["place_table"] = 1
    _, reward, terminated, _, info = env.step(0)
    assert reward == pytest.approx(1.0) and terminated and info["task_success"]


def test_seeded_reset_is_deterministic_and_matches_crafter() -> None:
    env = CrafterEnv(CrafterConfig(privileged=True))
    obs_a, _ = env.reset(seed=7)
    map_a = env.full_map()[0].copy()
    actions = np.random.default_rng(0).integers(0, 17, 60)
    trace_a = [env.step(int(a))[0] for a in actions]
    obs_b, _ = env.reset(seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(map_a, env.full_map()[0])
    for a, expected in zip(actions, trace_a, strict=True):
        np.testing.assert_array_equal(env.step(int(a))[0], expected)
    reference = crafter.Env(seed=7)
    first_frame = reference.reset()
    np.testing.assert_array_equal(map_a, reference._world._mat_map)
    pixels = CrafterEnv(CrafterConfig(observation="pixels"))
    np.testing.assert_array_equal(pixels.reset(seed=7)[0], first_frame)
    env.reset(seed=8)
    assert not np.array_equal(map_a, env.full_map()[0])


@pytest.mark.parametrize("seed", [11, 12345])
def test_fast_worldgen_equals_crafter(seed: int) -> None:
    def build(generate: object) -> tuple[np.ndarray, list[tuple[str, tuple[int, int]]], float]:
        world = engine.World((64, 64), constants.materials, (12, 12))
        world.reset(seed=seed)
        player = objects.Player(world, (32, 32))
        world.add(player)
        generate(world, player)  # type: ignore[operator]
        objs = [(type(o).__name__, (int(o.pos[0]), int(o.pos[1]))) for o in world.objects]
        return world._mat_map.copy(), objs, float(world.random.uniform())

    ours, theirs = build(generate_world), build(worldgen.generate_world)
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert ours[1] == theirs[1]
    assert ours[2] == theirs[2]  # the world's random stream is left in the same state


def _trace(env: CrafterEnv, steps: int, reseed_at: int) -> list[np.ndarray]:
    """Observations, positions and the world's random stream over several episodes."""
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=5)
    trace = [obs]
    for i in range(steps):
        if i == reseed_at:  # an explicit seed makes the prefetched world stale
            obs, _ = env.reset(seed=9)
        else:
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(17)))
            if terminated or truncated:
                obs, _ = env.reset()
        trace.append(np.append(obs, [*env.player_pos, env._world.random.randint(1 << 30)]))
    return trace


def test_prefetched_worlds_replay_generation_exactly() -> None:
    plain = _trace(CrafterEnv(CrafterConfig(episode_length=60)), 500, reseed_at=200)
    prefetching = CrafterEnv(CrafterConfig(episode_length=60, prefetch_worlds=True))
    fetched = _trace(prefetching, 500, reseed_at=200)
    assert shared_prefetcher(prefetching.area) is not None  # the helper really served them
    for a, b in zip(plain, fetched, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.timeout(120)
def test_many_requests_ahead_never_block_both_sides() -> None:
    """Far more requests than the pipe holds answers for (many envs asking ahead): the
    helper's answers are read as requests go out, so neither side waits on the other."""
    area = (24, 24)  # a helper of its own; small worlds, quick to make
    helper = WorldPrefetcher(area)
    try:
        tickets = [helper.request(seed) for seed in range(125 * MAX_IN_FLIGHT)]
        recipes = [helper.take(ticket) for ticket in reversed(tickets)]
        assert [r.world_seed for r in recipes] == list(reversed(range(125 * MAX_IN_FLIGHT)))
        dropped = helper.request(999)
        helper.drop(dropped)
        assert helper.take(helper.request(7)).world_seed == 7
        with pytest.raises(KeyError):
            helper.take(dropped)
    finally:
        helper.close()


@pytest.mark.faults
def test_dead_prefetch_helper_falls_back_to_local_generation() -> None:
    area = (48, 48)  # a helper of its own, so the other tests keep theirs
    env = CrafterEnv(CrafterConfig(area=area, prefetch_worlds=True))
    reference = CrafterEnv(CrafterConfig(area=area, privileged=True))
    env.reset(seed=3)
    helper = shared_prefetcher(area)
    assert helper is not None
    helper._process.kill()
    helper._process.join(5)
    env.reset()  # the pending world is lost with the helper: generated here instead
    reference.reset(seed=3)
    reference.reset()
    np.testing.assert_array_equal(env._world._mat_map, reference._world._mat_map)
    assert shared_prefetcher(area) is None
    env.reset()
    reference.reset()
    np.testing.assert_array_equal(env._world._mat_map, reference._world._mat_map)


@pytest.mark.faults
def test_helper_dead_before_the_first_request_is_no_crash() -> None:
    area = (40, 40)  # a helper of its own, so the other tests keep theirs
    helper = shared_prefetcher(area)
    assert helper is not None
    helper._process.kill()
    helper._process.join(5)
    env = CrafterEnv(CrafterConfig(area=area, prefetch_worlds=True))
    reference = CrafterEnv(CrafterConfig(area=area))
    env.reset(seed=4)  # its request for the next world meets the broken pipe
    reference.reset(seed=4)
    np.testing.assert_array_equal(env._world._mat_map, reference._world._mat_map)
    env.reset()
    reference.reset()
    np.testing.assert_array_equal(env._world._mat_map, reference._world._mat_map)
    assert shared_prefetcher(area) is None


@pytest.mark.faults
def test_prefetching_env_runs_from_a_script_on_standard_input() -> None:
    # A helper started by `spawn` cannot re-run a main module read from standard input: it
    # dies at once, and the env must carry on without it.
    script = (
        "from rlgpt.envs.crafter.config import CrafterConfig\n"
        "from rlgpt.envs.crafter.env import CrafterEnv\n"
        "env = CrafterEnv(CrafterConfig(episode_length=20, prefetch_worlds=True))\n"
        "env.reset(seed=1)\n"
        "for _ in range(100):\n"
        "    *_, terminated, truncated, _ = env.step(0)\n"
        "    if terminated or truncated:\n"
        "        env.reset()\n"
        "print('episodes', env._episode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "episodes 6" in done.stdout  # 5 resets after the first


def test_rendering_does_not_change_dynamics() -> None:
    plain, rendered = CrafterEnv(), CrafterEnv()
    plain.reset(seed=5)
    rendered.reset(seed=5)
    for a in np.random.default_rng(1).integers(0, 17, 400):
        obs_p, r_p, *_ = plain.step(int(a))
        rendered.render()
        obs_r, r_r, *_ = rendered.step(int(a))
        np.testing.assert_array_equal(obs_p, obs_r)
        assert r_p == r_r


def test_env_without_skill_memory_plays_the_same_and_refuses_skills() -> None:
    tracked = CrafterEnv()
    lean = CrafterAdapter().make_env(
        CrafterAdapter().task("crafter:score"), EnvSettings(skill_memory=False)
    )
    tracked.reset(seed=9)
    lean.reset(seed=9)
    for a in np.random.default_rng(2).integers(0, 17, 300):
        obs_t, r_t, *_ = tracked.step(int(a))
        obs_l, r_l, *_ = lean.step(int(a))
        np.testing.assert_array_equal(obs_t, obs_l)
        assert r_t == r_l
    assert tracked.memory.mask("grass").any()
    with pytest.raises(RuntimeError, match="skill_memory=False"):
        SkillAPI(lean, step=None, max_steps=10)


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(UnknownTaskError) as err:
        CrafterEnv(CrafterConfig(task="crafter:fly"))
    assert "crafter:collect_diamond" in str(err.value) and "crafter:score" in str(err.value)
    with pytest.raises(UnknownTaskError):
        CrafterAdapter().task("crafter:fly")


def test_full_map_is_privileged() -> None:
    env = CrafterEnv()
    env.reset(seed=0)
    with pytest.raises(PermissionError):
        env.full_map()
    privileged = CrafterEnv(CrafterConfig(privileged=True))
    privileged.reset(seed=0)
    mats, objs = privileged.full_map()
    assert mats.shape == objs.shape == (64, 64)


def test_adapter_protocol_and_descriptions() -> None:
    adapter = CrafterAdapter()
    assert isinstance(adapter, EnvAdapter)
    assert len(adapter.tasks()) == 23 and "crafter:score" in adapter.tasks()
    assert adapter.task("crafter:score").score
    assert adapter.primitive_actions() == list(constants.actions)
    vocab = adapter.vocabulary()
    assert {"tree", "cow", "zombie", "table"} <= set(vocab["targets"])
    assert vocab["makeable"] == list(constants.make) and len(vocab["achievements"]) == 22
    public = {n for n in dir(SkillAPI) if not n.startswith("_")}
    assert {s.name for s in adapter.skill_specs()} == public
    assert "wood_pickaxe" in adapter.manual()


def test_local_view_matches_world() -> None:
    env = CrafterEnv()
    env.reset(seed=4)
    view = env.local_view()
    x, y = env.player_pos
    assert view.shape == (9, 7)
    assert env.id_to_name[int(view[4, 3])] == "player"
    world = env.player.world
    for i in range(9):
        for j in range(7):
            material, obj = world[(x + i - 4, y + j - 3)]
            if obj is None and material is not None:
                assert env.id_to_name[int(view[i, j])] == material
