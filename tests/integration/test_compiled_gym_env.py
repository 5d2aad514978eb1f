"""`CompiledCrafterEnv`, the compiled drop-in for `CrafterEnv` where code actions run, against
the Python env: every step, every accessor the skill API reads, code actions as options, and
MaskablePPO with code actions trained on both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

from rlgpt.actions.build import make_options_env
from rlgpt.bench.baseline_library import ACTIONS as BASELINE_ACTIONS
from rlgpt.bench.baseline_library import write_scripted_baseline
from rlgpt.envs.base import EnvSettings, load_adapter
from rlgpt.envs.crafter.compiled_gym import CompiledCrafterEnv
from rlgpt.envs.crafter.config import CrafterConfig
from rlgpt.envs.crafter.env import CrafterEnv
from rlgpt.envs.crafter.skills.api import SkillAPI
from rlgpt.tools.rl_job import RLJob
from rlgpt.tools.rl_pipeline import train_policy

pytestmark = pytest.mark.integration


def _assert_views_equal(where: str, python: CrafterEnv, compiled: CompiledCrafterEnv) -> None:
    for ours, theirs in zip(compiled.local_layers(), python.local_layers(), strict=True):
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{where}: 9x7 layers")
    np.testing.assert_array_equal(compiled.memory.materials, python.memory.materials)
    np.testing.assert_array_equal(compiled.memory.objects, python.memory.objects)
    assert compiled.facing == python.facing, where
    assert compiled.facing_name() == python.facing_name(), where
    assert compiled.sleeping == python.sleeping, where
    assert compiled.status == python.status, where
    assert compiled.episode_steps == python.episode_steps, where


@pytest.mark.parametrize("observation", ["symbolic", "pixels"])
def test_steps_and_views_equal_python_env(observation: str) -> None:
    """Observations, rewards, episode ends, infos and every skill-API accessor, step for step."""
    config = CrafterConfig(observation=observation, episode_length=120, privileged=True)
    python, compiled = CrafterEnv(config), CompiledCrafterEnv(config)
    first = python.reset(seed=9), compiled.reset(seed=9)
    np.testing.assert_array_equal(first[0][0], first[1][0])
    assert first[0][1] == first[1][1]
    episodes, unlocked = 1, set()
    for t, action in enumerate(np.random.default_rng(2).integers(0, 17, 400).tolist()):
        where = f"step {t}, action {action}"
        theirs, ours = python.step(action), compiled.step(action)
        np.testing.assert_array_equal(ours[0], theirs[0], err_msg=f"{where}: observation")
        assert ours[1:] == theirs[1:], where
        unlocked |= set(ours[4]["new_achievements"])
        _assert_views_equal(where, python, compiled)
        np.testing.assert_array_equal(compiled.render(), python.render(), err_msg=where)
        if t % 50 == 0:
            for ours_map, theirs_map in zip(compiled.full_map(), python.full_map(), strict=True):
                np.testing.assert_array_equal(ours_map, theirs_map, err_msg=f"{where}: map")
        if ours[2] or ours[3]:
            episodes += 1
            again = python.reset(), compiled.reset()
            np.testing.assert_array_equal(again[0][0], again[1][0])
            assert again[0][1] == again[1][1]
    assert episodes >= 3 and unlocked  # resets and new achievements were compared


def test_skill_api_acts_the_same() -> None:
    """Navigation, collecting, placing and sleeping take the same steps to the same states."""
    config = CrafterConfig(episode_length=3000)
    python, compiled = CrafterEnv(config), CompiledCrafterEnv(config)
    outcomes: dict[str, list[Any]] = {}
    for env in (python, compiled):
        env.reset(seed=3)
        api = SkillAPI(env, max_steps=2000)
        done = []
        for _ in range(6):
            done += [api.move_to("tree"), api.do(), api.explore(15)]
        done += [api.place("table"), api.make("wood_pickaxe"), api.move_to("water"), api.do()]
        done += [api.sleep(50), env.player_pos, env.inventory, env.episode_steps]
        outcomes[type(env).__name__] = done
    assert outcomes["CompiledCrafterEnv"] == outcomes["CrafterEnv"]
    inventory = outcomes["CrafterEnv"][-2]
    assert inventory["wood_pickaxe"] == 1  # the run did collect, place and make


def test_options_env_with_code_actions_equals_python_env(tmp_path: Path) -> None:
    """The scripted-baseline code actions as options: the same agent steps on both envs."""
    library = write_scripted_baseline(tmp_path / "library")
    adapter = load_adapter("crafter")
    task = adapter.task("crafter:score")
    envs = [
        make_options_env(
            adapter,
            task,
            EnvSettings(episode_length=300, compiled=compiled),
            library=library,
            action_names=list(BASELINE_ACTIONS),
        )
        for compiled in (False, True)
    ]
    assert isinstance(envs[1].unwrapped, CompiledCrafterEnv)
    resets = [env.reset(seed=4) for env in envs]
    np.testing.assert_array_equal(resets[0][0], resets[1][0])
    options, env_steps = 0, 0
    for t, action in enumerate(np.random.default_rng(5).integers(0, 22, 150).tolist()):
        theirs, ours = (env.step(action) for env in envs)
        np.testing.assert_array_equal(ours[0], theirs[0], err_msg=f"agent step {t}")
        assert ours[1:4] == theirs[1:4], t
        drop = ("episode",)  # holds wall time
        assert {k: v for k, v in ours[4].items() if k not in drop} == {
            k: v for k, v in theirs[4].items() if k not in drop
        }, t
        assert np.array_equal(envs[0].action_masks(), envs[1].action_masks())
        options += action >= 17
        env_steps += ours[4]["env_steps"]
        if ours[2] or ours[3]:
            resets = [env.reset() for env in envs]
            np.testing.assert_array_equal(resets[0][0], resets[1][0])
    assert options > 20 and env_steps > 150 + options  # options took several steps each


def _weights(path: str) -> torch.Tensor:
    model = MaskablePPO.load(path, device="cpu")
    return torch.cat([p.detach().flatten() for p in model.policy.parameters()])


def test_maskable_ppo_with_code_actions_gives_the_same_weights(tmp_path: Path) -> None:
    """MaskablePPO over primitives plus code actions, env workers on each backend."""
    library = write_scripted_baseline(tmp_path / "library")
    results = {}
    for backend in ("auto", "python"):
        job = RLJob(
            task="crafter:score",
            library_dir=str(library),
            action_names=list(BASELINE_ACTIONS),
            algo="maskable_ppo",
            n_envs=2,
            n_steps=64,
            timesteps=768,
            episode_length=100,
            env_backend=backend,  # type: ignore[arg-type]
            checkpoint_every=0,
            output_dir=str(tmp_path / backend),
        )
        results[backend] = train_policy(job)
    ours, theirs = results["auto"], results["python"]
    assert ours.vec_env == theirs.vec_env == "subproc"
    assert (ours.episodes, ours.agent_steps, ours.env_steps) == (
        theirs.episodes,
        theirs.agent_steps,
        theirs.env_steps,
    )
    assert ours.agent_steps < ours.env_steps  # code actions ran
    assert torch.equal(_weights(ours.policy_path), _weights(theirs.policy_path))
