"""Sandbox: static refusals, structured runtime errors, limits, crash isolation in OptionsEnv."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rlgpt.actions.library import ActionLibrary
from rlgpt.actions.options import OptionsEnv
from rlgpt.actions.sandbox import (
    CodeActionRejected,
    SandboxLimits,
    check_code,
    load_code_action,
    run_code_action,
)
from rlgpt.envs.base import EnvSettings, Predicate, resolve_task
from rlgpt.envs.crafter.adapter import CrafterAdapter
from rlgpt.envs.crafter.env import CrafterConfig, CrafterEnv
from rlgpt.tools.code_check import check_code_action
from tests.helpers import CPU_LIMITS

pytestmark = pytest.mark.integration

CRAFTER = CrafterAdapter()
SKILLS = [s.name for s in CRAFTER.skill_specs()]
SCORE = CRAFTER.task("crafter:score")
LIMITS = SandboxLimits(wall_seconds=1.0, max_steps=40)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import os\ndef run(api):\n    return True\n", "import"),
        ("def run(api):\n    from os import path\n    return True\n", "import"),
        ("def run(api):\n    return api.inventory.__class__\n", "attributes starting with '_'"),
        ("def run(api):\n    return ().__class__.__bases__\n", "attributes starting with '_'"),
        ("def run(api):\n    return api._env\n", "attributes starting with '_'"),
        ("def run(api):\n    return open('/etc/passwd').read()\n", "`open`"),
        ("def run(api):\n    return eval('1')\n", "`eval`"),
        ("def run(api):\n    return getattr(api, 'x')\n", "`getattr`"),
        ("def run(api):\n    return '{0.x}'.format(api)\n", "`.format`"),
        ("def run(api):\n    try:\n        pass\n    except Exception:\n        pass\n", "try"),
        ("def run(api):\n    f = lambda: 1\n    return f()\n", "lambda"),
        ("def run(api):\n    return api.teleport('diamond')\n", "not a skill"),
        ("def helper(api):\n    return True\n", "def run(api)"),
        ("def run(api):\n    return (\n", "syntax error"),
        ("X = sorted(range(10))\ndef run(api):\n    return True\n", "may not call"),
        ("while True:\n    pass\ndef run(api):\n    return True\n", "module level"),
        ("def run(api):\n    return 10 ** 10 ** 9 > 0\n", "`**`"),
        ("def run(api):\n    g = (x for x in [1])\n    return g.gi_frame.f_back\n", "frame"),
        ("def run(api):\n    n = 5\n    return 2 ** n > 0\n", "`**`"),
    ],
)
def test_static_refusals(source: str, message: str) -> None:
    with pytest.raises(CodeActionRejected) as info:
        check_code(source, SKILLS)
    assert info.value.kind == "static"
    assert message in str(info.value)


def test_static_error_has_line_and_accepts_good_code() -> None:
    with pytest.raises(CodeActionRejected) as info:
        check_code("def run(api):\n    x = 1\n    return x.__dict__\n", SKILLS)
    assert info.value.line == 3
    with pytest.raises(CodeActionRejected, match="limit"):
        check_code("def run(api):\n    return True\n" + "#" * 30_000, SKILLS)
    good = (
        "TARGET = 'tree'\n\n"
        "def available(api):\n    return api.seen(TARGET)\n\n"
        "def run(api):\n"
        "    for _ in range(3):\n"
        "        if api.move_to(TARGET):\n"
        "            return api.do()\n"
        "    return False\n"
    )
    check_code(good, SKILLS)
    action = load_code_action("good", good, SKILLS)
    assert action.available is not None


@pytest.mark.parametrize(
    ("source", "kind", "line", "min_step"),
    [
        ("def run(api):\n    api.noop()\n    return {}['missing']\n", "runtime", 3, 1),
        ("def run(api):\n    x = 0\n    while True:\n        x += 1\n", "timeout", None, 0),
        ("def run(api):\n    while True:\n        api.noop()\n", "step_budget", 3, 40),
        ("def run(api):\n    return 3\n", "return_type", None, 0),
        ("def f(n):\n    return f(n + 1)\n\ndef run(api):\n    return f(0)\n", "recursion", 2, 0),
        ("def run(api):\n    return print('hi')\n", "static", 2, 0),
    ],
)
def test_runtime_errors_are_structured(
    source: str, kind: str, line: int | None, min_step: int
) -> None:
    """Each case runs in an evaluation worker process on a real Crafter episode."""
    result = check_code_action(
        source, "case", None, SCORE, None, [], [3], LIMITS, EnvSettings(episode_length=200)
    )
    assert result["success_rate"] == 0.0
    assert len(result["errors"]) == 1
    error = result["errors"][0]
    assert error["kind"] == kind
    if line is not None:
        assert error["line"] == line
    assert error["step"] >= min_step
    if kind == "timeout":
        assert "wall-time" in error["message"] and error["line"] in (3, 4)
    if kind == "step_budget":
        assert result["mean_steps"] == LIMITS.max_steps


def test_a_loop_cut_off_by_the_episode_end_is_a_named_error() -> None:
    looping = "def run(api):\n    while True:\n        api.noop()\n"
    result = check_code_action(
        looping, "loops", None, SCORE, None, [], [3, 4], LIMITS, EnvSettings(episode_length=25)
    )
    assert result["success_rate"] == 0.0
    assert [e["kind"] for e in result["errors"]] == ["episode_end", "episode_end"]
    error = result["errors"][0]
    assert error["step"] == 25 and "loop without returning" in error["message"]
    assert "api.noop()" in error["message"]  # the last skill call
    assert all(r["interrupted"] == "episode_end" for r in result["results"])


def test_error_message_of_a_huge_value_is_built_within_the_limits() -> None:
    # str() of this KeyError would format all 300 MB after the call's limits have ended.
    huge_key = "def run(api):\n    key = 'x' * 300_000_000\n    return {}[key]\n"
    limits = SandboxLimits(wall_seconds=10.0, max_steps=40, memory_mb=2048)
    started = time.monotonic()
    result = check_code_action(
        huge_key, "huge", None, SCORE, None, [], [3], limits, EnvSettings(episode_length=50)
    )
    seconds = time.monotonic() - started
    (error,) = result["errors"]
    assert error["kind"] == "runtime" and error["line"] == 3
    assert error["message"].startswith("KeyError: 'xxx")
    assert len(error["message"]) <= limits.max_message_chars
    assert seconds < limits.wall_seconds, seconds


def test_wall_time_limit_off_the_main_thread() -> None:
    """Without signals (not a main thread) the line tracer still stops a busy loop."""
    action = load_code_action("spin", "def run(api):\n    while True:\n        pass\n", SKILLS)
    env = CrafterEnv(CrafterConfig(episode_length=50))
    env.reset(seed=0)
    from rlgpt.envs.crafter.skills.api import SkillAPI

    outcomes = []
    thread = threading.Thread(
        target=lambda: outcomes.append(
            run_code_action(action, SkillAPI(env), SandboxLimits(wall_seconds=0.5))
        )
    )
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert outcomes[0].error is not None and outcomes[0].error["kind"] == "timeout"
    assert outcomes[0].error["line"] in (2, 3)


@pytest.mark.faults
def test_crashing_code_action_does_not_crash_options_env(tmp_path: Path) -> None:
    lib = ActionLibrary(tmp_path)
    lib.add_code("crash", "def run(api):\n    api.noop()\n    api.noop()\n    return 1 / 0\n")
    lib.add_code(
        "never", "def available(api):\n    return False\n\ndef run(api):\n    return True\n"
    )
    lib.add_code("broken", "def run(api):\n    return api.nothing()\n")
    inner = CrafterEnv(CrafterConfig(task="crafter:collect_wood", episode_length=30))
    env = OptionsEnv(inner, lib, ["crash", "never", "broken"], adapter=CRAFTER, limits=LIMITS)
    env.reset(seed=5)
    assert env.n_actions == 20
    masks = env.action_masks()
    assert masks[:17].all() and masks[17] and not masks[18] and not masks[19]

    _, _, terminated, truncated, info = env.step(17)
    assert info["option"] == "crash" and info["option_success"] is False
    assert info["code_action_error"]["kind"] == "runtime"
    assert info["code_action_error"]["line"] == 4
    assert info["env_steps"] == 2
    assert not terminated and not truncated

    # A statically refused library action fails as an option; one noop keeps time moving.
    _, _, _, _, info = env.step(19)
    assert info["code_action_error"]["kind"] == "static" and info["env_steps"] == 1

    # The env keeps working: primitives step, and the episode ends at its length.
    total = 3
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(17)
        total += info["env_steps"]
        done = terminated or truncated
    assert truncated and total == 30
    assert info["episode_summary"]["env_steps"] == 30


def test_step_budget_and_episode_end_inside_options_env(tmp_path: Path) -> None:
    lib = ActionLibrary(tmp_path)
    lib.add_code("walk", "def run(api):\n    while True:\n        api.noop()\n", max_steps=12)
    inner = CrafterEnv(CrafterConfig(episode_length=30))
    env = OptionsEnv(inner, lib, ["walk"], adapter=CRAFTER, limits=SandboxLimits(max_steps=100))
    env.reset(seed=1)
    _, _, _, truncated, info = env.step(17)
    assert info["env_steps"] == 12 and info["code_action_error"]["kind"] == "step_budget"
    _, _, _, truncated, info = env.step(17)
    assert info["env_steps"] == 12
    # The third call is cut by the episode's end: no error, the option just ends.
    _, _, _, truncated, info = env.step(17)
    assert truncated and info["env_steps"] == 6
    assert "code_action_error" not in info and info["option_success"] is False
    run = env.run_until("walk", Predicate(kind="inventory", name="wood"), 5)
    assert run["success"] is False and run["env_steps"] == 0


def test_run_code_action_counts_skill_api_steps() -> None:
    from rlgpt.envs.crafter.skills.api import SkillAPI

    env = CrafterEnv(CrafterConfig(episode_length=50))
    env.reset(seed=2)
    loop = load_code_action("loop", "def run(api):\n    while True:\n        api.noop()\n", SKILLS)
    outcome = run_code_action(loop, SkillAPI(env, max_steps=5), LIMITS)
    assert outcome.steps == 5 and not outcome.success
    assert outcome.error is not None and outcome.error["kind"] == "step_budget"
    ok = load_code_action("ok", "def run(api):\n    api.noop()\n    return True\n", SKILLS)
    outcome = run_code_action(ok, SkillAPI(env), LIMITS)
    assert outcome.success and outcome.steps == 1 and outcome.error is None


def test_api_proxy_exposes_only_skills() -> None:
    from rlgpt.actions.sandbox import make_api_proxy
    from rlgpt.envs.crafter.skills.api import SkillAPI

    env = CrafterEnv(CrafterConfig(episode_length=50))
    env.reset(seed=2)
    proxy = make_api_proxy(SkillAPI(env), SKILLS)
    assert set(vars(proxy)) == set(SKILLS)
    assert not hasattr(proxy, "_env") and not hasattr(proxy, "_step")
    assert proxy.count("wood") == 0
    helper = "def peek(a):\n    return a.memory\n\ndef run(api):\n    return peek(api) is None\n"
    outcome = run_code_action(load_code_action("peek", helper, SKILLS), SkillAPI(env), LIMITS)
    assert outcome.error is not None and outcome.error["kind"] == "runtime"
    assert "memory" in outcome.error["message"] and outcome.error["line"] == 2


def test_breach_ends_the_episode_and_skill_results_are_plain_copies(tmp_path: Path) -> None:
    """A limit breach truncates the episode; skills hand out copies, never env objects."""
    lib = ActionLibrary(tmp_path)
    lib.add_code("deep", "def f(n):\n    return f(n + 1)\n\ndef run(api):\n    return f(0)\n")
    lib.add_code(
        "peek",
        "def run(api):\n    inv = api.inventory()\n    inv['wood'] = 5\n"
        "    p = api.position()\n    return api.count('wood') == 0 and len(p) == 2\n",
    )
    env = OptionsEnv(
        CrafterEnv(CrafterConfig(episode_length=50)), lib, ["deep", "peek"], adapter=CRAFTER
    )
    env.reset(seed=3)
    _, _, terminated, truncated, info = env.step(18)
    assert info["option_success"] is True and "code_action_error" not in info
    _, _, terminated, truncated, info = env.step(17)
    assert info["code_action_error"]["kind"] == "recursion"
    assert info["code_action_error"]["episode_ended"] is True
    assert truncated and not terminated and info["episode_summary"]["success"] is False


def test_loaded_constants_are_frozen_between_calls() -> None:
    source = "SEEN = {'a': [1]}\n\ndef run(api, extra=[]):\n    return len(SEEN['a']) == 1\n"
    action = load_code_action("frozen", source, SKILLS)
    env = CrafterEnv(CrafterConfig(episode_length=20))
    env.reset(seed=0)
    from rlgpt.envs.crafter.skills.api import SkillAPI

    assert run_code_action(action, SkillAPI(env), LIMITS).success
    mutate = "SEEN = [1]\n\ndef run(api):\n    SEEN.append(1)\n    return True\n"
    outcome = run_code_action(load_code_action("m", mutate, SKILLS), SkillAPI(env), LIMITS)
    assert outcome.error is not None and outcome.error["kind"] == "runtime"
    assert "append" in outcome.error["message"] and outcome.error["line"] == 4


@pytest.mark.faults
def test_plan_evaluation_goes_on_after_a_worker_is_killed(tmp_path: Path) -> None:
    """A code action that ends its worker fails that episode; the other seeds still run."""
    from rlgpt.tools.evaluate import evaluate_plan

    lib = ActionLibrary(tmp_path)
    lib.add_code("stuck", "def run(api):\n    return sum(range(10 ** 18)) > 0\n")
    result = evaluate_plan(
        resolve_task("crafter", "crafter:collect_wood"),
        [{"subaction": "s1", "predicate": None, "action": "stuck"}],
        lib.root,
        seeds=[0, 1],
        max_steps_per_subaction=20,
        settings=EnvSettings(episode_length=40),
        limits=CPU_LIMITS,
    )
    assert result["episodes"] == 2 and result["task_success_rate"] == 0.0
    assert [f["seed"] for f in result["failures"]] == [0, 1]
    for failure in result["failures"]:
        assert failure["error"]["kind"] == "cpu" and failure["error"]["line"] == 2
        assert failure["subaction"] == "s1" and failure["action"] == "stuck"
