"""Run-time context: plugin choice, model per role, budgets (Studio shows every field)."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from langgraph.runtime import Runtime

from rlgpt.llm.settings import ROLES, LLMRole, LLMSettings


def _f(default: Any, description: str) -> Any:
    return field(default=default, metadata={"description": description})


class ConfigError(ValueError):
    """A malformed run configuration (unknown field, wrong type, out-of-range value)."""


@dataclass(kw_only=True)
class Context:
    """Every run setting; the same fields come from CLI flags, a TOML file or the server."""

    env: str = _f("crafter", "Environment plugin (entry point group `rlgpt.envs`).")
    planner: str = _f("llm", "Planner (slow agent) plugin name in `rlgpt.nodes`.")
    coder: str = _f("llm", "Coder (fast agent) plugin name in `rlgpt.nodes`.")
    rl_trainer: str = _f("sb3", "RL trainer plugin name in `rlgpt.nodes`.")
    critic: str = _f("llm", "Critic plugin name in `rlgpt.nodes` (`llm` or `rules`).")
    planner_model: str = _f(
        "local:qwen2.5-coder-1.5b",
        "Planner model: `local:qwen2.5-coder-1.5b` (embedded), `local:smollm2`, "
        "`openai:<model>`, or `<base URL>#<model>` for any OpenAI-compatible endpoint.",
    )
    coder_model: str = _f("local:qwen2.5-coder-1.5b", "Coder model (same forms as planner_model).")
    critic_model: str = _f(
        "local:qwen2.5-coder-1.5b", "Critic model (same forms as planner_model)."
    )
    llm_temperature: float = _f(0.0, "Sampling temperature for every role.")
    llm_max_tokens: int = _f(768, "Upper bound on tokens per answer.")
    llm_timeout: float = _f(180.0, "Seconds before one model call times out.")
    llm_max_retries: int = _f(2, "Retries for transient model errors and unparsable answers.")
    llm_cache_dir: str = _f("", "Directory of the on-disk response cache; empty = no cache.")
    plan_revisions: int = _f(
        2, "How often the planner revises a plan in which the env's rules find a gap."
    )
    code_repairs: int = _f(
        2, "How often the coder rewrites a code action that failed its check, with the trace."
    )
    code_pass_rate: float = _f(
        1.0,
        "Check success rate at which the coder stops repairing a code action (checks are "
        "cheap; a rare failure on the check's episodes is a common one on held-out seeds).",
    )
    repair_temperature: float = _f(
        0.7,
        "Sampling temperature of the coder's repair attempts (at least llm_temperature): a "
        "small model repeats its failed answer when it decodes greedily.",
    )
    reuse_library: bool = _f(
        True,
        "Reuse code actions that passed their checks in earlier runs before asking the coder "
        "for new ones, and keep this run's passed ones for later runs.",
    )
    shared_library: str = _f(
        "", "Directory of the library shared across runs; empty = <runs_dir>/shared_library."
    )
    max_inner_loops: int = _f(2, "How often the critic may send work back to the coder.")
    max_outer_loops: int = _f(1, "How often the critic may send the task back to the planner.")
    success_threshold: float = _f(0.8, "Task success rate at which the critic stops.")
    rl_algo: Literal["auto", "ppo", "maskable_ppo"] = _f(
        "auto", "SB3 algorithm; `auto` uses MaskablePPO when code actions can be unavailable."
    )
    rl_timesteps: int = _f(20_000, "Env-step budget per RL training job (code-action steps count).")
    rl_n_envs: int = _f(
        1,
        "Envs per training job: worker processes when code actions are in the action space, "
        "else batched in the training process.",
    )
    rl_learning_rate: float = _f(3e-4, "PPO learning rate.")
    rl_n_steps: int = _f(256, "PPO rollout length per env.")
    rl_checkpoint_every: int = _f(
        5_000,
        "Env steps between two resumable training checkpoints; a killed run resumed with "
        "--resume continues training from the last one (0 = none).",
    )
    observation: Literal["symbolic", "pixels"] = _f(
        "symbolic", "Policy observation: symbolic (egocentric semantic view + inventory) or pixels."
    )
    code_check_episodes: int = _f(
        10, "Real episodes the coder runs to check a new code action (they take seconds)."
    )
    code_action_max_steps: int = _f(300, "Env-step budget of one code-action call.")
    code_action_seconds: float = _f(10.0, "Wall-time budget of one code-action call.")
    subaction_max_steps: int = _f(400, "Env steps a sub-action may take in an evaluation.")
    eval_episodes: int = _f(10, "Held-out episodes per critic evaluation.")
    eval_seed: int = _f(100_000, "First held-out evaluation seed (training uses seeds below it).")
    seed: int = _f(0, "Training seed.")
    privileged: bool = _f(
        False, "Let code actions read the full world map (marked in every report)."
    )
    approve_plan: bool = _f(
        False, "Pause after planning for a human to approve, edit or reject the plan."
    )
    approve_rl: bool = _f(False, "Pause before RL training for a human to approve the budgets.")
    runs_dir: str = _f("runs", "Where run directories are written.")
    gif: bool = _f(True, "Write a GIF of one evaluation episode into the report.")
    node_timeout: float = _f(
        0.0,
        "Seconds after which a node step is asked to stop (0 = no limit); RL training "
        "stops early and keeps the policy trained so far.",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on values no run can use."""
        positive = (
            "llm_max_tokens",
            "rl_timesteps",
            "rl_n_envs",
            "rl_n_steps",
            "code_check_episodes",
            "code_action_max_steps",
            "subaction_max_steps",
            "eval_episodes",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        non_negative = (
            "max_inner_loops",
            "max_outer_loops",
            "plan_revisions",
            "code_repairs",
            "llm_max_retries",
            "seed",
            "rl_checkpoint_every",
        )
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if not 0.0 <= self.repair_temperature <= 2.0:
            raise ConfigError(
                f"repair_temperature must be in [0, 2], got {self.repair_temperature}"
            )
        if not 0.0 < self.code_pass_rate <= 1.0:
            raise ConfigError(f"code_pass_rate must be in (0, 1], got {self.code_pass_rate}")
        if not 0.0 < self.success_threshold <= 1.0:
            raise ConfigError(f"success_threshold must be in (0, 1], got {self.success_threshold}")
        if self.node_timeout < 0:
            raise ConfigError(f"node_timeout must be >= 0, got {self.node_timeout}")
        if self.eval_seed <= self.seed:
            raise ConfigError("eval_seed must be above the training seed range")
        if self.rl_algo not in ("auto", "ppo", "maskable_ppo"):
            raise ConfigError(f"rl_algo must be auto, ppo or maskable_ppo, got {self.rl_algo!r}")
        if self.observation not in ("symbolic", "pixels"):
            raise ConfigError(f"observation must be symbolic or pixels, got {self.observation!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of every configurable field."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Context:
        """Build from a dict (TOML table, CLI flags, server `context`); unknown keys are errors."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        coerced: dict[str, Any] = {}
        for key, value in values.items():
            default = known[key].default
            if isinstance(default, bool) and not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false, got {value!r}")
            if (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if type(default) is not type(value):
                raise ConfigError(
                    f"{key} must be {type(default).__name__}, got {type(value).__name__}"
                )
            coerced[key] = value
        return cls(**coerced)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> Context:
        """Read a TOML file (top-level keys, or a `[run]` table) and apply overrides."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        table = data.get("run", data)
        table = {k: v for k, v in table.items() if k != "task"}
        return cls.from_mapping({**table, **(overrides or {})})

    def shared_library_dir(self) -> Path:
        """Where code actions shared across runs are kept."""
        return Path(self.shared_library or Path(self.runs_dir) / "shared_library")

    def llm_settings(self, role: LLMRole) -> LLMSettings:
        """How `role` (planner, coder or critic) talks to its model in this run."""
        if role not in ROLES:
            raise ValueError(f"unknown model role {role!r}; expected one of {', '.join(ROLES)}")
        return LLMSettings(
            model=getattr(self, f"{role}_model"),
            temperature=self.llm_temperature,
            max_tokens=self.llm_max_tokens,
            timeout=self.llm_timeout,
            max_retries=self.llm_max_retries,
            cache_dir=self.llm_cache_dir,
            seed=self.seed,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for reports and metrics)."""
        return dataclasses.asdict(self)


def context_of(runtime: Runtime[Any] | None) -> Context:
    """The run's Context; a server may hand over a plain dict, a bare run none at all."""
    ctx = getattr(runtime, "context", None)
    if ctx is None:
        return Context()
    if isinstance(ctx, Context):
        return ctx
    if isinstance(ctx, dict):
        return Context.from_mapping(ctx)
    raise TypeError(f"unexpected run-time context of type {type(ctx).__name__}")
