"""The grid-world test plugin: found through its entry point, and a complete EnvAdapter."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
from rlgpt_gridworld.world import GridWorldEnv

from rlgpt import plugins
from rlgpt.actions.build import make_options_env
from rlgpt.envs.base import (
    EnvAdapter,
    EnvSettings,
    OptionInterrupted,
    UnknownTaskError,
    load_adapter,
    unavailable_reason,
)
from rlgpt.graph.schemas import Plan, PlanInvalidError, check_plan
from rlgpt.nodes.prompts import coder_code_messages, skills_doc

ENTRY_POINT = "rlgpt_gridworld.adapter:GridWorldAdapter"


def _collect(api: Any, target: str, done: Any) -> bool:
    """What a code action would do: walk to a seen target and use it, exploring otherwise."""
    for _ in range(10):
        if done():
            return True
        if api.seen(target):
            api.move_to(target)
            api.do()
        else:
            api.explore(10)
    return bool(done())


def test_the_plugin_is_installed_through_its_entry_point() -> None:
    assert plugins.envs.describe()["gridworld"] == ENTRY_POINT
    adapter = load_adapter("gridworld")
    assert isinstance(adapter, EnvAdapter)
    assert type(adapter).__module__ == "rlgpt_gridworld.adapter"
    assert unavailable_reason(adapter) is None
    assert adapter.tasks() == [
        "gridworld:collect_key",
        "gridworld:open_door",
        "gridworld:collect_gem",
        "gridworld:score",
    ]
    with pytest.raises(UnknownTaskError, match="gridworld:collect_gem"):
        adapter.task("gridworld:collect_wood")


def test_skills_reach_the_gem_and_info_reports_it() -> None:
    adapter = load_adapter("gridworld")
    task = adapter.task("gridworld:collect_gem")
    env = adapter.make_env(task, EnvSettings(episode_length=200, terminate_on_success=True))
    assert isinstance(env, GridWorldEnv)
    assert env.action_space.n == len(adapter.primitive_actions())
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        assert info["inventory"] == {"key": 0, "gem": 0}
        api = adapter.make_skill_api(env, None, 200)
        assert _collect(api, "key", lambda a=api: a.count("key") >= 1)
        assert not task.solved(env._info())
        with pytest.raises(OptionInterrupted):  # the episode ends the moment the gem is taken
            _collect(api, "door", lambda a=api: "open_door" in a.achievements())
            _collect(api, "gem", lambda a=api: a.count("gem") >= 1)
        info = env._info()
        assert info["achievements"] == {"collect_key": 1, "open_door": 1, "collect_gem": 1}
        assert info["inventory"] == {"key": 0, "gem": 1}  # opening the door used the key
        assert task.solved(info) and info["task_success"]


def test_the_door_needs_the_key_and_the_far_room_stays_unseen() -> None:
    adapter = load_adapter("gridworld")
    env = adapter.make_env(adapter.task("gridworld:open_door"), EnvSettings(episode_length=99))
    assert isinstance(env, GridWorldEnv)
    env.reset(seed=1)
    api = adapter.make_skill_api(env, None, 99)
    for _ in range(5):
        if not api.explore(10):
            break
    assert not api.explore(10)  # nothing reachable is left unseen
    assert not env.seen[-1].any()  # the far column lies beyond sight from this room
    assert api.seen("door") and api.move_to("door")
    assert not api.do() and api.facing() == "door"  # locked: no key yet
    assert env.achievements["open_door"] == 0
    assert not api.move_to("gem")  # behind the locked door, or not seen at all


def test_score_and_rewards_are_the_plugins_own() -> None:
    adapter = load_adapter("gridworld")
    assert adapter.achievements() == ["collect_key", "open_door", "collect_gem"]
    assert adapter.score({"collect_key": 1.0, "open_door": 0.5}) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="collect_wood"):
        adapter.score({"collect_wood": 1.0})
    env = adapter.make_env(adapter.task("gridworld:score"), EnvSettings(episode_length=50))
    env.reset(seed=2)
    rewards: list[float] = []
    api = adapter.make_skill_api(env, lambda a: rewards.append(float(env.step(a)[1])), 50)
    assert _collect(api, "key", lambda: api.count("key") >= 1)
    assert sum(rewards) == 1.0  # the score task pays one per new achievement


def test_pixels_and_render_are_rgb_frames() -> None:
    adapter = load_adapter("gridworld")
    settings = EnvSettings(observation="pixels", pixel_size=32)
    env = adapter.make_env(adapter.task("gridworld:collect_key"), settings)
    assert isinstance(env, GridWorldEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert env.render().shape == (32, 32, 3)


def test_options_env_and_prompts_use_the_plugins_names() -> None:
    adapter = load_adapter("gridworld")
    task = adapter.task("gridworld:collect_key")
    env = make_options_env("gridworld", task, EnvSettings(episode_length=20))
    assert env.all_action_names == adapter.primitive_actions()
    env.reset(seed=0)
    _, _, _, _, info = env.step(adapter.primitive_actions().index("noop"))
    assert info["option"] == "noop" and info["achievements"]["collect_key"] == 0
    for spec in adapter.skill_specs():
        method = getattr(type(adapter.make_skill_api(env.unwrapped, None, 1)), spec.name)
        names = [p for p in inspect.signature(method).parameters if p != "self"]
        assert names == [p.name for p in spec.params]
    doc = skills_doc(adapter.skill_specs())
    system = str(coder_code_messages({"id": "k"}, adapter.manual(), doc, None, None)[0].content)
    assert "GRID WORLD MANUAL" in system and 'api.move_to(name: "key"|"door"|"gem"' in system
    assert "api.explore() first" in system  # its API has the navigation skills the hint names
    without = "\n".join(line for line in doc.splitlines() if "api.explore(" not in line)
    system = str(coder_code_messages({"id": "x"}, adapter.manual(), without, None, None)[0].content)
    assert "api.explore() first" not in system


def test_plans_are_checked_against_the_plugins_vocabulary() -> None:
    adapter = load_adapter("gridworld")
    step = {"id": "get_key", "description": "d", "method": "code"}
    plan = Plan.model_validate(
        {"sub_actions": [{**step, "predicate": {"kind": "achievement", "name": "key"}}]}
    )
    assert check_plan(plan, adapter).sub_actions[0].predicate.kind == "inventory"
    wood = {**step, "predicate": {"kind": "inventory", "name": "wood"}}
    with pytest.raises(PlanInvalidError, match="wood"):
        check_plan(Plan.model_validate({"sub_actions": [wood]}), adapter)
