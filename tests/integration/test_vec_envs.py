"""Plain-PPO vectorized envs on real Crafter: the sharded layout changes nothing but speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from rlgpt.actions.worker import prepare_forkserver
from rlgpt.tools.rl_job import RLJob
from rlgpt.tools.rl_pipeline import EnvFactory, train_policy
from rlgpt.tools.vec_envs import FastDummyVecEnv, ShardedVecEnv, local_share


def _factories(n: int, episode_length: int = 40) -> list[EnvFactory]:
    job = RLJob(
        task="crafter:score",
        n_envs=n,
        episode_length=episode_length,
        output_dir="unused",
        policy_name="p",
    )
    return [EnvFactory(job, rank) for rank in range(n)]


class _BrokenFactory:
    """An env constructor that fails in the shard process."""

    def __call__(self) -> Any:
        raise ValueError("no env for you")


def _same_infos(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key == "episode":  # Monitor's episode stats: the same but for the wall time
                assert {**a[key], "t": 0} == {**b[key], "t": 0}
            elif isinstance(a[key], np.ndarray):
                np.testing.assert_array_equal(a[key], b[key])
            else:
                assert a[key] == b[key], key


def test_sharded_steps_exactly_like_in_process() -> None:
    prepare_forkserver()
    n = 5
    plain = FastDummyVecEnv(_factories(n))  # type: ignore[arg-type]
    sharded = ShardedVecEnv(_factories(n), local_envs=2)
    try:
        for venv in (plain, sharded):
            venv.seed(7)
        np.testing.assert_array_equal(plain.reset(), sharded.reset())
        _same_infos(sharded.reset_infos, plain.reset_infos)
        actions = np.random.default_rng(0).integers(0, 17, (120, n))
        episodes_ended = 0
        for step_actions in actions:
            for venv in (plain, sharded):
                venv.step_async(step_actions)
            obs_a, rew_a, done_a, info_a = plain.step_wait()
            obs_b, rew_b, done_b, info_b = sharded.step_wait()
            np.testing.assert_array_equal(obs_a, obs_b)
            np.testing.assert_array_equal(rew_a, rew_b)
            np.testing.assert_array_equal(done_a, done_b)
            _same_infos(list(info_b), list(info_a))
            _same_infos(sharded.reset_infos, plain.reset_infos)
            episodes_ended += int(done_a.sum())
        assert episodes_ended >= n  # every env went through at least one auto-reset
        assert sharded.get_attr("observation_space") == plain.get_attr("observation_space")
        assert sharded.env_method("action_masks", indices=[0, 4])[1].all()
        assert sharded.env_is_wrapped(FastDummyVecEnv) == [False] * n
        sharded.set_attr("marker", 3, indices=[1, 3])
        assert sharded.get_attr("marker", indices=[1, 3]) == [3, 3]
    finally:
        plain.close()
        sharded.close()
    assert not sharded._process.is_alive()


def test_sharded_training_is_the_same_training(tmp_path: Path) -> None:
    """The same job with one and two env processes ends with identical policy weights."""
    weights = []
    kinds = []
    for processes in (1, 2):
        job = RLJob(
            task="crafter:score",
            timesteps=1_024,
            n_envs=4,
            n_steps=64,
            seed=3,
            output_dir=str(tmp_path / f"p{processes}"),
            policy_name="p",
            checkpoint_every=0,
            env_processes=processes,
            env_backend="python",
        )
        result = train_policy(job)
        kinds.append(result.vec_env)
        model = PPO.load(result.policy_path, device="cpu")
        weights.append(torch.cat([p.flatten() for p in model.policy.parameters()]))
    assert kinds == ["dummy", "sharded"]
    assert torch.equal(weights[0], weights[1])


def test_shard_errors_are_raised_with_their_cause() -> None:
    prepare_forkserver()
    with pytest.raises(RuntimeError, match="no env for you"):
        ShardedVecEnv([*_factories(1), _BrokenFactory()], local_envs=1)
    with pytest.raises(ValueError, match="local_envs"):
        ShardedVecEnv(_factories(2), local_envs=2)
    venv = ShardedVecEnv(_factories(2), local_envs=1)
    try:
        venv.reset()
        venv._process.kill()
        venv._process.join()
        with pytest.raises(RuntimeError, match="died"):
            venv.step(np.zeros(2, np.int64))
    finally:
        venv.close()


def test_layout_defaults_keep_a_shard_for_the_helper_on_pixels_only() -> None:
    assert [local_share(n) for n in (2, 3, 8, 16)] == [1, 1, 3, 6]
    common: dict[str, Any] = {"task": "crafter:score", "output_dir": "unused", "policy_name": "p"}
    assert RLJob(**common, observation="pixels").env_process_count == 2
    assert RLJob(**common, observation="symbolic").env_process_count == 1
    assert RLJob(**common, observation="symbolic", env_processes=2).env_process_count == 2
