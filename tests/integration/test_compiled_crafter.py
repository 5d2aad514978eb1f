"""The compiled Crafter step and frames against rlgpt's Python env (itself held to crafter
by `test_crafter_parity.py`), step for step, down to the world's random stream and the
last pixel.

Random actions die early and craft little, so some runs start with a full inventory and
walk in long straight stretches: they reach caves (skeletons, arrows), place tables,
furnaces and plants, make every tool and fight at night.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from rlgpt.envs.base import Predicate
from rlgpt.envs.crafter.compiled import _compact, _randint, _uniform
from rlgpt.envs.crafter.compiled_env import CompiledCrafter
from rlgpt.envs.crafter.config import CrafterConfig
from rlgpt.envs.crafter.constants import ITEMS
from rlgpt.envs.crafter.env import CrafterEnv
from rlgpt.envs.crafter.vec_env import CompiledCrafterVecEnv
from rlgpt.tools.rl_job import RLJob
from rlgpt.tools.rl_pipeline import EnvFactory, make_vec_env, train_policy
from rlgpt.tools.vec_envs import FastDummyVecEnv

pytestmark = pytest.mark.integration

_RICH = ("wood", "stone", "coal", "iron", "sapling")


def _objects(env: CrafterEnv) -> list[dict[str, Any]]:
    """The Python env's objects in the compiled env's terms (`CompiledCrafter.objects`)."""
    out = []
    for obj in env._world.objects:
        name = type(obj).__name__
        counter = getattr(obj, "cooldown", getattr(obj, "reload", getattr(obj, "grown", 0)))
        facing = tuple(int(v) for v in obj.facing) if name in ("Player", "Arrow") else (0, 0)
        out.append(
            {
                "type": name,
                "pos": tuple(int(v) for v in obj.pos),
                "health": int(obj.health),
                "counter": int(counter),
                "facing": facing,
            }
        )
    return out


def _assert_same(where: str, env: CrafterEnv, game: CompiledCrafter) -> None:
    s = game.state
    ours, theirs = game.objects(0), _objects(env)
    if ours != theirs:
        first = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None
        )
        detail = (
            f"object {first}: compiled {ours[first]} vs python {theirs[first]}"
            if first is not None
            else f"{len(ours)} objects vs {len(theirs)}"
        )
        pytest.fail(f"{where}: {detail}", pytrace=False)
    np.testing.assert_array_equal(s.mat[0], env._world._mat_map, err_msg=f"{where}: materials")
    occupied = env._world._obj_map > 0
    np.testing.assert_array_equal(s.objmap[0] > 0, occupied, err_msg=f"{where}: object map")
    _, keys, pos, _, _ = env._world.random.get_state()
    assert int(s.mt_pos[0]) == pos and np.array_equal(s.mt_key[0], keys), f"{where}: stream"
    player = env.player
    assert game.inventory(0) == env.inventory, f"{where}: inventory"
    assert game.achievements(0) == env.achievements, f"{where}: achievements"
    life = [player._hunger, player._thirst, player._fatigue, player._recover]
    assert s.life[0].tolist() == life, f"{where}: hunger, thirst, fatigue, recover"
    assert bool(s.sleeping[0]) == player.sleeping, f"{where}: sleeping"
    assert int(s.player_last_health[0]) == player._last_health, f"{where}: last health"


def _actions(seed: int, walker: bool, n: int) -> list[int]:
    """Uniform random actions, or half of them a direction held for 20 steps."""
    rng = np.random.default_rng(seed)
    out, direction = [], 1
    for t in range(n):
        if walker and t % 20 == 0:
            direction = int(rng.integers(1, 5))
        out.append(direction if walker and rng.random() < 0.5 else int(rng.integers(0, 17)))
    return out


def _play(
    seed: int,
    config: CrafterConfig,
    steps: int,
    *,
    rich: bool = False,
    walker: bool = False,
    compact_every_step: bool = False,
) -> tuple[int, set[str]]:
    """Both envs from `reset(seed=seed)` through `steps` actions; returns the episodes
    played and what happened (object types met, achievements unlocked)."""
    env = CrafterEnv(config, render_mode=None)
    game = CompiledCrafter(config, 1)
    obs, _ = env.reset(seed=seed)
    np.testing.assert_array_equal(game.reset(0, seed=seed), obs)
    if rich:  # the same full inventory in both, after the reset
        for item in _RICH:
            env.player.inventory[item] = 9
        game.state.inv[0] = [env.player.inventory[k] for k in ITEMS]
    episode, t = 1, 0
    seen: set[str] = set()
    for action in _actions(seed, walker, steps):
        t += 1
        where = f"seed {seed}, episode {episode}, step {t}, action {action}"
        obs, reward, terminated, truncated, _ = env.step(action)
        game.step(np.array([action]))
        if compact_every_step:
            _compact(game.state, 0)
        _assert_same(where, env, game)
        assert (reward, terminated, truncated) == (
            game.rewards[0],
            game.terminated[0],
            game.truncated[0],
        ), where
        np.testing.assert_array_equal(game.obs[0], obs, err_msg=f"{where}: observation")
        seen |= {o["type"] for o in game.objects(0)}
        seen |= {name for name, count in game.achievements(0).items() if count}
        if terminated or truncated:
            episode, t = episode + 1, 0
            obs, _ = env.reset()
            np.testing.assert_array_equal(game.reset(0), obs)
            _assert_same(f"seed {seed}, reset to episode {episode}", env, game)
    return episode, seen


def test_random_stream_is_numpy_legacy() -> None:
    """uniform() and randint(0, n) draw what `np.random.RandomState` draws, in order."""
    game = CompiledCrafter(CrafterConfig(prefetch_worlds=False), 1)
    for seed in (0, 1, 12345):
        reference = np.random.RandomState(seed)
        _, keys, pos, _, _ = reference.get_state()
        game.state.mt_key[0], game.state.mt_pos[0] = keys, pos
        for k in range(2000):  # more than one refill of the 624-word state
            high = (1, 2, 3, 4, 5, 7, 8, 100, 144)[k % 9]
            if k % 2:
                assert _uniform(game.state, 0) == reference.uniform()
            else:
                assert _randint(game.state, 0, high) == reference.randint(0, high)
        assert int(game.state.mt_pos[0]) == reference.get_state()[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_steps_equal_python_env(seed: int) -> None:
    episodes, _ = _play(seed, CrafterConfig(episode_length=150, prefetch_worlds=False), 400)
    assert episodes >= 2  # resets are compared too


def test_full_inventory_walker_equals_python_env() -> None:
    """Crafting, placing, plants, caves and the first night."""
    config = CrafterConfig(episode_length=600, prefetch_worlds=False)
    _, seen = _play(3, config, 900, rich=True, walker=True)
    met = {"Arrow", "Plant", "Skeleton", "Zombie", "Cow"}
    made = {"make_wood_pickaxe", "make_stone_sword", "place_table", "place_furnace", "place_plant"}
    assert met | made <= seen


def test_task_reward_and_shaping_equal_python_env() -> None:
    config = CrafterConfig(
        task="crafter:collect_wood",
        episode_length=300,
        shaping=(("wood", 0.1), ("sapling", 0.05)),
        prefetch_worlds=False,
    )
    episodes, seen = _play(4, config, 600, walker=True)
    assert "collect_wood" in seen and episodes >= 2  # the solved task ends its episode


def test_frames_equal_python_env() -> None:
    """Day, night (noise from the render stream), sleep, inventory counts: every pixel."""
    config = CrafterConfig(observation="pixels", episode_length=400, prefetch_worlds=False)
    _, seen = _play(5, config, 400, rich=True, walker=True)
    assert "wake_up" in seen  # slept (the grey frames) and woke


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(200, 206))
def test_long_episodes_of_frames_equal_python_env(seed: int) -> None:
    config = CrafterConfig(observation="pixels", episode_length=1000, prefetch_worlds=False)
    _play(seed, config, 1500, rich=seed % 2 == 0, walker=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_long_episodes_equal_python_env(seed: int) -> None:
    """Days and nights, full inventories, and object slots renumbered after every step."""
    config = CrafterConfig(episode_length=2000, prefetch_worlds=False)
    _play(seed, config, 3000, rich=True, walker=True, compact_every_step=seed % 2 == 0)


def _job(n_envs: int, **kwargs: Any) -> RLJob:
    return RLJob(task="crafter:score", n_envs=n_envs, **{"output_dir": "unused", **kwargs})


def test_vec_env_steps_like_python_envs() -> None:
    """Same observations, rewards, episode ends and episode infos as the pipeline's envs."""
    job = _job(3, episode_length=60)
    batched = make_vec_env(job)
    python = FastDummyVecEnv([EnvFactory(job, rank) for rank in range(3)])  # type: ignore[arg-type]
    assert isinstance(batched, CompiledCrafterVecEnv)
    try:
        for venv in (batched, python):
            venv.seed(11)
        np.testing.assert_array_equal(batched.reset(), python.reset())
        ends = 0
        for t, actions in enumerate(np.random.default_rng(0).integers(0, 17, (200, 3))):
            if t == 150:  # new seeds mid-run: worlds asked for ahead are dropped
                for venv in (batched, python):
                    venv.seed(23)
                np.testing.assert_array_equal(batched.reset(), python.reset())
            ours, theirs = batched.step(actions), python.step(actions)
            for a, b in zip(ours[:3], theirs[:3], strict=True):
                np.testing.assert_array_equal(a, b)
            for done, a, b in zip(ours[2], ours[3], theirs[3], strict=True):
                assert a["TimeLimit.truncated"] == b["TimeLimit.truncated"]
                if not done:
                    continue
                ends += 1
                for key in ("episode_summary", "achievements", "inventory", "task_success"):
                    assert a[key] == b[key], key
                assert {**a["episode"], "t": 0} == {**b["episode"], "t": 0}
                np.testing.assert_array_equal(a["terminal_observation"], b["terminal_observation"])
        assert ends >= 6
    finally:
        batched.close()
        python.close()


def _weights(path: str) -> torch.Tensor:
    model = PPO.load(path, device="cpu")
    return torch.cat([p.detach().flatten() for p in model.policy.parameters()])


@pytest.mark.parametrize(("observation", "timesteps"), [("symbolic", 1024), ("pixels", 512)])
def test_training_gives_the_same_weights(tmp_path: Path, observation: str, timesteps: int) -> None:
    """A real PPO run on the compiled envs learns exactly what it learns on the Python envs."""
    results = {}
    for backend in ("batched", "python"):
        job = _job(
            4,
            observation=observation,
            env_processes=1,
            timesteps=timesteps,
            n_steps=64,
            env_backend=backend,
            checkpoint_every=0,
            output_dir=str(tmp_path / backend),
            episode_length=100,
        )
        results[backend] = train_policy(job)
    assert results["batched"].vec_env == "batched"
    assert results["python"].vec_env == "dummy"
    assert results["batched"].episodes == results["python"].episodes > 0
    assert torch.equal(
        _weights(results["batched"].policy_path), _weights(results["python"].policy_path)
    )


def test_batched_backend_refuses_what_it_cannot_build() -> None:
    goal = Predicate(kind="achievement", name="collect_wood")
    with pytest.raises(ValueError, match="no batched envs"):
        make_vec_env(_job(2, env_backend="batched", predicate=goal))
    venv = make_vec_env(_job(2))
    with pytest.raises(AttributeError, match="no attribute"):
        venv.get_attr("player")
    assert [m.all() for m in venv.env_method("action_masks")] == [True, True]
    assert venv.has_attr("action_masks")  # what MaskablePPO checks first
    python = make_vec_env(_job(2, predicate=goal))
    try:
        assert isinstance(python, FastDummyVecEnv)  # auto: sub-task rewards need Python envs
    finally:
        python.close()
