"""Run-time context: plugin choice, model per role, budgets (Studio shows every field)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from langgraph.runtime import Runtime
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.llm.settings import ROLES, LLMRole, LLMSettings
from rlgpt.tools.rl_job import RLJob


class ConfigError(ValueError):
    """A malformed run configuration (unknown field, wrong type, out-of-range value)."""


def _from(model: type[BaseModel], name: str, description: str | None = None) -> Any:
    """A field that feeds `model.name`: its default, bounds (and description, unless one is
    given) come from there."""
    source = model.model_fields[name]
    return FieldInfo.merge_field_infos(source, description=description or source.description)


def config_problems(exc: ValidationError) -> str:
    """One line per bad field: its name, what it needs and the value given."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "config"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown config field {where!r}")
            continue
        if not error["loc"]:  # a rule across fields
            problems.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        problems.append(f"{where}: {error['msg'].lower()} (got {error.get('input')!r})")
    return "invalid config: " + "; ".join(problems)


class Context(BaseModel):
    """Every run setting; the same fields come from CLI flags, a TOML file or the server.

    Validation lives here, in the fields' types and bounds: a bad value from any source is
    the same clear error. Settings that feed a lower layer (a role's model settings, an RL
    job, a code action's limits) take their default and bounds from it.
    """

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    env: str = Field(
        default="crafter", description="Environment plugin (entry point group `rlgpt.envs`)."
    )
    planner: str = Field(
        default="llm", description="Planner (slow agent) plugin name in `rlgpt.nodes`."
    )
    coder: str = Field(
        default="llm", description="Coder (fast agent) plugin name in `rlgpt.nodes`."
    )
    rl_trainer: str = Field(default="sb3", description="RL trainer plugin name in `rlgpt.nodes`.")
    critic: str = Field(
        default="llm", description="Critic plugin name in `rlgpt.nodes` (`llm` or `rules`)."
    )
    planner_model: str = Field(
        default="local:qwen2.5-coder-1.5b",
        description="Planner model: `local:qwen2.5-coder-1.5b` (embedded), `local:smollm2`, "
        "`openai:<model>`, or `<base URL>#<model>` for any OpenAI-compatible endpoint.",
    )
    coder_model: str = Field(
        default="local:qwen2.5-coder-1.5b", description="Coder model (same forms as planner_model)."
    )
    critic_model: str = Field(
        default="local:qwen2.5-coder-1.5b",
        description="Critic model (same forms as planner_model).",
    )
    llm_temperature: float = _from(
        LLMSettings, "temperature", "Sampling temperature for every role."
    )
    llm_max_tokens: int = _from(LLMSettings, "max_tokens", "Upper bound on tokens per answer.")
    llm_timeout: float = _from(LLMSettings, "timeout", "Seconds before one model call times out.")
    llm_max_retries: int = _from(LLMSettings, "max_retries")
    llm_cache_dir: str = _from(
        LLMSettings, "cache_dir", "Directory of the on-disk response cache; empty = no cache."
    )
    plan_revisions: int = Field(
        default=2,
        ge=0,
        description="How often the planner revises a plan in which the env's rules find a gap.",
    )
    code_repairs: int = Field(
        default=2,
        ge=0,
        description="How often the coder rewrites a code action that failed its check, "
        "with the trace.",
    )
    code_pass_rate: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Check success rate at which the coder stops repairing a code action "
        "(checks are cheap; a rare failure on the check's episodes is a common one on "
        "held-out seeds).",
    )
    repair_temperature: float = Field(
        default=0.7,
        ge=0.0,
        le=2.0,
        description="Sampling temperature of the coder's repair attempts (at least "
        "llm_temperature): a small model repeats its failed answer when it decodes greedily.",
    )
    reuse_library: bool = Field(
        default=True,
        description="Reuse code actions that passed their checks in earlier runs before asking "
        "the coder for new ones, and keep this run's passed ones for later runs.",
    )
    shared_library: str = Field(
        default="",
        description="Directory of the library shared across runs (one subfolder per env); "
        "empty = <runs_dir>/shared_library.",
    )
    library_min_similarity: float = Field(
        default=0.7,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity (sentence embeddings of description, success condition "
        "and env) above which a shared code action whose predicate differs is checked for a "
        "step before the coder is asked; needs the `library` extra.",
    )
    library_candidates: int = Field(
        default=2,
        ge=0,
        le=5,
        description="How many similar shared code actions are checked for a step (each check "
        "costs `code_check_episodes` episodes); 0 = exact predicate matches only.",
    )
    max_inner_loops: int = Field(
        default=2, ge=0, description="How often the critic may send work back to the coder."
    )
    max_outer_loops: int = Field(
        default=1, ge=0, description="How often the critic may send the task back to the planner."
    )
    curriculum_rounds: int = Field(
        default=8,
        ge=0,
        description="On an open-ended task (crafter:score): planner rounds of the automatic "
        "curriculum, each adding the next achievements after the steps the agent already "
        "masters (0 = one plan for the whole task).",
    )
    curriculum_targets: int = Field(
        default=2,
        ge=1,
        le=8,
        description="New achievements one curriculum round adds at most: the plan is cut "
        "after the step that reaches the last of them (in the order the rules can follow).",
    )
    allow_rl: bool = Field(
        default=True,
        description="Let the planner mark steps `rl`; false makes every step a code action "
        "(the code-only agent: its library driven by its planner, no RL).",
    )
    final_policy: str = Field(
        default="rl",
        description="Final-agent plugin in `rlgpt.nodes`, run after an open-ended task's loop: "
        "`rl` trains a whole-game policy whose action space is the primitives plus every "
        "passed code action and policy; `code` plays whole episodes with the plan's actions "
        "alone; `none` skips it.",
    )
    final_policy_share: float = Field(
        default=0.5,
        ge=0.0,
        lt=1.0,
        description="Part of `env_step_budget` kept for the final policy; the curriculum uses "
        "the rest (without a budget the final policy gets `rl_timesteps`).",
    )
    final_episode_length: int = Field(
        default=10_000,
        ge=10,
        description="Env steps after which an episode of the final policy is truncated "
        "(10,000 is the game's standard).",
    )
    success_threshold: float = Field(
        default=0.8, gt=0.0, le=1.0, description="Task success rate at which the critic stops."
    )
    rl_algo: Literal["auto", "ppo", "maskable_ppo"] = _from(
        RLJob,
        "algo",
        "SB3 algorithm; `auto` uses MaskablePPO when code actions can be unavailable.",
    )
    rl_timesteps: int = _from(
        RLJob, "timesteps", "Env-step budget per RL training job (code-action steps count)."
    )
    env_step_budget: int | None = Field(
        default=None,
        ge=1,
        description="Env steps the whole run may take: code checks, RL jobs with their "
        "preludes and evaluations all count; an RL job gets at most what is left. Unset = no "
        "run-wide budget (each RL job has `rl_timesteps`).",
    )
    rl_n_envs: int = _from(
        RLJob,
        "n_envs",
        "Envs per training job: worker processes when code actions are in the action space, "
        "else batched in the training process.",
    )
    rl_learning_rate: float = _from(RLJob, "learning_rate", "PPO learning rate.")
    rl_n_steps: int = _from(RLJob, "n_steps", "PPO rollout length per env.")
    rl_checkpoint_every: int = _from(
        RLJob,
        "checkpoint_every",
        "Env steps between two resumable training checkpoints; a killed run resumed with "
        "--resume continues training from the last one (0 = none).",
    )
    executor: Literal["local", "ray"] = Field(
        default="local",
        description="Where independent RL jobs train: `local` one after another in this "
        "process, `ray` at once as Ray tasks (needs the `ray` extra).",
    )
    ray_address: str = Field(
        default="",
        description="Ray cluster to join with `executor = ray` (e.g. `10.0.0.5:6379`); empty "
        "= start a local cluster on this machine, listening on loopback only.",
    )
    observation: Literal["symbolic", "pixels"] = _from(
        RLJob,
        "observation",
        "Policy observation: symbolic (egocentric semantic view + inventory) or pixels.",
    )
    code_check_episodes: int = Field(
        default=10,
        ge=1,
        description="Real episodes the coder runs to check a new code action (they take seconds).",
    )
    code_action_max_steps: int = _from(
        RLJob, "code_action_max_steps", "Env-step budget of one code-action call."
    )
    code_action_seconds: float = _from(
        RLJob, "code_action_seconds", "Wall-time budget of one code-action call."
    )
    subaction_max_steps: int = Field(
        default=400, ge=1, description="Env steps a sub-action may take in an evaluation."
    )
    eval_episodes: int = Field(
        default=10, ge=1, description="Held-out episodes per critic evaluation."
    )
    eval_seed: int = Field(
        default=100_000,
        ge=1,
        description="First held-out evaluation seed (training uses seeds below it).",
    )
    seed: int = Field(default=0, ge=0, description="Training seed.")
    privileged: bool = Field(
        default=False,
        description="Let code actions read the full world map (marked in every report).",
    )
    approve_plan: bool = Field(
        default=False,
        description="Pause after planning for a human to approve, edit or reject the plan.",
    )
    approve_rl: bool = Field(
        default=False, description="Pause before RL training for a human to approve the budgets."
    )
    runs_dir: str = Field(default="runs", description="Where run directories are written.")
    gif: bool = Field(
        default=True, description="Write a GIF of one evaluation episode into the report."
    )
    node_timeout: float = Field(
        default=0.0,
        ge=0.0,
        description="Seconds after which a node step is asked to stop (0 = no limit); RL training "
        "stops early and keeps the policy trained so far.",
    )

    @model_validator(mode="after")
    def _held_out_seeds(self) -> Context:
        if self.eval_seed <= self.seed:
            raise ValueError("eval_seed must be above the training seed range")
        return self

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of every configurable field."""
        return list(cls.model_fields)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Context:
        """Build from a dict (TOML table, CLI flags, server `context`); bad values are a
        ConfigError naming each field and what it needs."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise ConfigError(config_problems(exc)) from None

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
        """Where this env's code actions shared across runs are kept (one folder per env:
        the same predicate names different things in different envs)."""
        return Path(self.shared_library or Path(self.runs_dir) / "shared_library") / self.env

    def llm_settings(self, role: LLMRole) -> LLMSettings:
        """How `role` (planner, coder or critic) talks to its model in this run."""
        if role not in ROLES:
            raise ValueError(f"unknown model role {role!r}; expected one of {', '.join(ROLES)}")
        shared = {field: getattr(self, name) for name, field in _LLM_FIELDS.items()}
        return LLMSettings(model=getattr(self, f"{role}_model"), **shared)

    def rl_job(self, **job: Any) -> RLJob:
        """An RL job of this run: the run's RL settings plus the job's own fields."""
        shared = {field: getattr(self, name) for name, field in _RL_JOB_FIELDS.items()}
        return RLJob(**{**shared, "env": self.env, **job})

    def sandbox_limits(self) -> SandboxLimits:
        """Per-call limits of a code action in this run."""
        return SandboxLimits(
            max_steps=self.code_action_max_steps, wall_seconds=self.code_action_seconds
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for reports and metrics)."""
        return self.model_dump()


#: Context field -> LLMSettings field, for every role.
_LLM_FIELDS = {
    "llm_temperature": "temperature",
    "llm_max_tokens": "max_tokens",
    "llm_timeout": "timeout",
    "llm_max_retries": "max_retries",
    "llm_cache_dir": "cache_dir",
    "seed": "seed",
}
#: Context field -> RLJob field, for every training job of a run.
_RL_JOB_FIELDS = {
    "rl_algo": "algo",
    "rl_timesteps": "timesteps",
    "rl_n_envs": "n_envs",
    "rl_learning_rate": "learning_rate",
    "rl_n_steps": "n_steps",
    "rl_checkpoint_every": "checkpoint_every",
    "observation": "observation",
    "code_action_max_steps": "code_action_max_steps",
    "code_action_seconds": "code_action_seconds",
    "privileged": "privileged",
    "seed": "seed",
}


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
