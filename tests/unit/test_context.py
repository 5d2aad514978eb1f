"""Run configuration: defaults, TOML files, validation errors, CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlgpt.cli import _parser, resolve_run
from rlgpt.graph.context import ConfigError, Context


def test_every_field_has_a_description() -> None:
    from dataclasses import fields

    assert all(f.metadata.get("description") for f in fields(Context))


def test_toml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        '[run]\ntask = "crafter:collect_wood"\nrl_timesteps = 5000\nsuccess_threshold = 1\n'
    )
    ctx = Context.from_toml(path, {"eval_episodes": 3})
    assert (ctx.rl_timesteps, ctx.eval_episodes, ctx.success_threshold) == (5000, 3, 1.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rl_timestep": 5}, "unknown config field(s): rl_timestep"),
        ({"rl_timesteps": "many"}, "rl_timesteps must be int"),
        ({"rl_timesteps": 0}, "rl_timesteps must be a positive integer"),
        ({"privileged": "yes"}, "privileged must be true or false"),
        ({"success_threshold": 1.5}, "success_threshold must be in (0, 1]"),
        ({"rl_algo": "dqn"}, "rl_algo must be auto, ppo or maskable_ppo"),
    ],
)
def test_malformed_config_is_a_clear_error(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Context.from_mapping(values)


def test_unparsable_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("rl_timesteps = = 3")
    with pytest.raises(ConfigError, match="cannot read config"):
        Context.from_toml(path)


def test_cli_flags_map_onto_context(tmp_path: Path) -> None:
    args = _parser().parse_args(
        [
            "run",
            "--task",
            "crafter:collect_wood",
            "--rl-timesteps",
            "777",
            "--privileged",
            "--critic",
            "rules",
            "--runs-dir",
            str(tmp_path),
        ]
    )
    run_id, task, ctx = resolve_run(args)
    assert task == "crafter:collect_wood"
    assert (ctx.rl_timesteps, ctx.privileged, ctx.critic) == (777, True, "rules")
    assert "collect_wood" in run_id


def test_cli_unknown_task_lists_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    from rlgpt.cli import main

    assert main(["run", "--task", "crafter:fly_to_moon"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'crafter:fly_to_moon'" in err
    assert "crafter:make_wood_pickaxe" in err
