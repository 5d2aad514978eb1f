"""Run configuration: defaults, TOML files, validation errors, CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlgpt.cli import _parser, resolve_run
from rlgpt.graph.context import ConfigError, Context


def test_every_field_has_a_description() -> None:
    assert all(info.description for info in Context.model_fields.values())


def test_settings_that_feed_a_lower_layer_take_its_defaults_and_bounds() -> None:
    from rlgpt.actions.sandbox import SandboxLimits
    from rlgpt.llm.settings import LLMSettings
    from rlgpt.tools.rl_job import RLJob

    ctx = Context()
    assert ctx.llm_max_tokens == LLMSettings().max_tokens
    assert ctx.code_action_seconds == SandboxLimits().wall_seconds
    assert ctx.rl_n_steps == RLJob.model_fields["n_steps"].default
    schema = Context.model_json_schema()["properties"]
    assert (schema["rl_n_envs"]["minimum"], schema["rl_n_envs"]["maximum"]) == (1, 256)
    job = Context(rl_n_envs=4, seed=3).rl_job(task="crafter:score", policy_name="p")
    assert (job.n_envs, job.seed, job.env) == (4, 3, "crafter")
    assert ctx.llm_settings("coder").timeout == ctx.llm_timeout


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
        ({"rl_timestep": 5}, "unknown config field 'rl_timestep'"),
        ({"rl_timesteps": "many"}, "rl_timesteps: input should be a valid integer (got 'many')"),
        ({"rl_timesteps": 0}, "rl_timesteps: input should be greater than or equal to 1"),
        ({"privileged": "yes"}, "privileged: input should be a valid boolean"),
        ({"success_threshold": 1.5}, "success_threshold: input should be less than or equal to 1"),
        ({"rl_algo": "dqn"}, "rl_algo: input should be 'auto', 'ppo' or 'maskable_ppo'"),
        ({"seed": 9, "eval_seed": 9}, "eval_seed must be above the training seed range"),
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
    # An optional number, a switched-off bool and a choice.
    args = _parser().parse_args(
        ["run", "--task", "crafter:score", "--env-step-budget", "5000", "--no-allow-rl",
         "--final-policy", "code", "--runs-dir", str(tmp_path)]
    )  # fmt: skip
    _, _, ctx = resolve_run(args)
    assert (ctx.env_step_budget, ctx.allow_rl, ctx.final_policy) == (5000, False, "code")


def test_cli_unknown_task_lists_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    from rlgpt.cli import main

    assert main(["run", "--task", "crafter:fly_to_moon"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'crafter:fly_to_moon'" in err
    assert "crafter:make_wood_pickaxe" in err
