"""What the RL pipeline is asked to do and what it reports: the job, its result, its record."""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from pydantic import BaseModel, Field, field_validator, model_validator
from typing_extensions import TypedDict

from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.envs.base import Predicate, ShapingTerm


class RLRunRecord(TypedDict):
    """One call of the RL pipeline tool."""

    subaction: str
    policy_path: str
    action_names: list[str]
    algo: str
    env_steps: int
    prelude_env_steps: NotRequired[int]
    agent_steps: int
    wall_time: float
    steps_per_second: float
    train_success_rate: float
    stopped_early: bool
    curve_path: str
    tensorboard_dir: str


#: Worker processes one job may start for envs that run library actions.
MAX_WORKER_ENVS = 16


class RLJob(BaseModel):
    """One training job of the RL pipeline."""

    env: str = Field(default="crafter", description="The env plugin that builds the envs.")
    task: str = Field(description="Task of the env plugin (e.g. `crafter:place_table`).")
    predicate: Predicate | None = Field(
        default=None,
        description="A sub-task's success condition: when set, it replaces the task's reward.",
    )
    shaping: list[ShapingTerm] = Field(
        default_factory=list, description="Bonus per unit gained of an inventory item."
    )
    library_dir: str | None = Field(
        default=None, description="Action-library root holding `action_names` and `prelude`."
    )
    action_names: list[str] = Field(
        default_factory=list, description="Library actions that join the env's primitive actions."
    )
    prelude: list[str] = Field(
        default_factory=list,
        description="Library actions run after each reset (earlier plan steps); not agent steps.",
    )
    episode_length: int = Field(default=500, ge=10, le=10_000, description="Env steps per episode.")
    timesteps: int = Field(
        default=20_000,
        ge=1,
        description="Env-step budget: every env step counts (code actions' and preludes').",
    )
    seed: int = Field(default=0, ge=0, description="Training seed (SB3; env worlds unless set).")
    env_seed: int | None = Field(
        default=None,
        ge=0,
        description="First env seed: env i starts at `env_seed + i`, and after k resumes at "
        "`env_seed + k * n_envs + i`, so no world sequence repeats; unset = `seed`.",
    )
    n_envs: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Envs: worker processes with library actions (at most "
        f"{MAX_WORKER_ENVS}), else in the training process (many envs suit the batched backend).",
    )
    env_processes: int | None = Field(
        default=None,
        ge=1,
        le=2,
        description="Processes stepping plain-PPO envs (no library actions): 2 = a helper "
        "steps a shard on a second core while the training process steps the rest; 1 = all "
        "in the training process; unset = 2 on pixels, 1 on the symbolic observation (see "
        "`env_process_count`). Episodes and trained weights are the same either way.",
    )
    env_backend: Literal["auto", "batched", "python"] = Field(
        default="auto",
        description="`batched` = the env plugin's batched envs, for plain RL only (no "
        "library actions, no sub-task predicate; Crafter: one compiled step, and one compiled "
        "frame drawing, for all envs); `python` = one Python env object per env; `auto` = "
        "batched where the plugin offers them for the job, else one env per env on the "
        "plugin's compiled step where it has one (Crafter: `CompiledCrafterEnv`, also in the "
        "env workers where code actions run). Episodes and trained weights are the same "
        "either way.",
    )
    algo: Literal["auto", "ppo", "maskable_ppo"] = Field(
        default="auto", description="`auto` = MaskablePPO when an action defines `available`."
    )
    observation: Literal["symbolic", "pixels"] = Field(
        default="symbolic", description="Policy observation (MLP on symbolic, CNN on pixels)."
    )
    learning_rate: float = Field(default=3e-4, gt=0, description="PPO learning rate.")
    n_steps: int = Field(default=256, ge=8, description="PPO rollout length per env.")
    batch_size: int | None = Field(
        default=None,
        ge=8,
        description="PPO minibatch size; unset = an eighth of the rollout (n_steps x n_envs), "
        "at least 64. Small minibatches make the update, not the env, the cost per step.",
    )
    n_epochs: int = Field(default=4, ge=1, description="PPO epochs per update.")
    ent_coef: float = Field(default=0.01, ge=0, description="PPO entropy bonus.")
    output_dir: str = Field(default="runs/rl", description="Where policy, curve and logs go.")
    policy_name: str = Field(
        default="policy",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="File stem of the saved policy.",
    )
    checkpoint_every: int = Field(
        default=5_000,
        ge=0,
        description="Env steps between two resumable checkpoints in `output_dir` (0 = none); "
        "a job restarted on the same `output_dir` continues from the last one.",
    )
    progress_every: int = Field(
        default=1_000, ge=1, description="Env steps between two progress events."
    )
    code_action_seconds: float = Field(
        default=SandboxLimits().wall_seconds,
        gt=0,
        description="Wall-time budget of one code-action call.",
    )
    code_action_max_steps: int = Field(
        default=SandboxLimits().max_steps,
        ge=1,
        description="Env-step budget of one code-action call (upper bound).",
    )
    privileged: bool = Field(default=False, description="Let skills read the full world map.")

    @field_validator("shaping", mode="before")
    @classmethod
    def _shaping_pairs(cls, value: Any) -> Any:
        # Accept (item, weight) pairs as well as ShapingTerm objects / dicts.
        if isinstance(value, list | tuple):
            return [
                {"item": v[0], "weight": v[1]} if isinstance(v, list | tuple) else v for v in value
            ]
        return value

    @model_validator(mode="after")
    def _library_for_actions(self) -> RLJob:
        if (self.action_names or self.prelude) and not self.library_dir:
            raise ValueError("`library_dir` is needed for library actions and preludes")
        if not self.in_process and self.n_envs > MAX_WORKER_ENVS:
            raise ValueError(
                f"n_envs={self.n_envs}: library actions run in one worker process per env, "
                f"at most {MAX_WORKER_ENVS}"
            )
        return self

    @property
    def in_process(self) -> bool:
        """Whether the envs run in the training process (no library code to contain)."""
        return not (self.action_names or self.prelude)

    @property
    def env_process_count(self) -> int:
        """`env_processes`, or its default by observation.

        Measured on 2 cores with 8 envs: pixels train ~15% faster with a helper process
        (rendering makes each env step heavy), the symbolic MLP no faster (its env steps are
        too light to repay the round trip to the helper).
        """
        if self.env_processes is not None:
            return self.env_processes
        return 2 if self.observation == "pixels" else 1

    def first_env_seed(self, resumes: int) -> int:
        """The seed of env 0 in an attempt that follows `resumes` interrupted ones."""
        base = self.seed if self.env_seed is None else self.env_seed
        return base + resumes * self.n_envs

    @property
    def minibatch_size(self) -> int:
        """The PPO minibatch size this job uses (never more than one rollout)."""
        rollout = self.n_steps * self.n_envs
        size = self.batch_size if self.batch_size is not None else max(64, rollout // 8)
        return min(size, rollout)

    def ppo_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of SB3's PPO / MaskablePPO for this job (CPU, quiet)."""
        return {
            "learning_rate": self.learning_rate,
            "n_steps": self.n_steps,
            "batch_size": self.minibatch_size,
            "n_epochs": self.n_epochs,
            "ent_coef": self.ent_coef,
            "seed": self.seed,
            "device": "cpu",
            "verbose": 0,
        }


class RLResult(BaseModel):
    """What a training job produced."""

    policy_path: str = Field(description="Saved SB3 zip.")
    action_names: list[str] = Field(description="Library actions after the primitives.")
    algo: str = Field(description="`ppo` or `maskable_ppo`.")
    env_steps: int = Field(description="Env steps taken by agent steps (the budgeted count).")
    prelude_env_steps: int = Field(
        description="Env steps spent in preludes (counted toward the budget)."
    )
    agent_steps: int = Field(description="Agent decisions (a code action is one).")
    episodes: int = Field(description="Finished training episodes.")
    wall_time: float = Field(
        description="Seconds of training (env set-up included), over every attempt of a "
        "resumed job."
    )
    wall_time_complete: bool = Field(
        default=True,
        description="False when an attempt before a resume left no time (an older "
        "checkpoint): `wall_time` then covers the later attempts only.",
    )
    steps_per_second: float = Field(
        description="Env steps per second of the whole job (set-up and saving included)."
    )
    training_steps_per_second: float = Field(
        default=0.0,
        description="Env steps per second inside SB3's learn() (set-up excluded), like SB3's fps.",
    )
    train_success_rate: float = Field(description="Success rate of the last 20 episodes.")
    stopped_early: bool = Field(description="Stopped by `should_stop` before the budget.")
    curve_path: str = Field(
        description="JSON list, one record per episode: episode, env_steps (training total at "
        "its end), length, agent_steps, return, success, achievements (unlocked names)."
    )
    tensorboard_dir: str = Field(description="SB3 TensorBoard logs; empty when unavailable.")
    tensorboard_note: str = Field(default="", description="Why there are no TensorBoard logs.")
    vec_env: str = Field(
        description="`subproc` (code runs in workers), `batched` (the env plugin's own batched "
        "envs), `sharded` (two env processes) or `dummy`."
    )
    resumed_from: int = Field(
        default=0, description="Env steps already done by an interrupted earlier attempt."
    )
    resumes: int = Field(default=0, description="Interrupted attempts this job continued from.")
    phase_seconds: dict[str, float] = Field(
        default_factory=dict,
        description="Where this attempt's wall time went, in seconds: `env` (stepping and "
        "resetting the envs, code actions included), `policy` (the rest of rollout "
        "collection: policy forward passes, rollout buffer, callbacks), `update` (PPO updates) "
        "and `other` (set-up and saving outside learn()).",
    )

    def to_record(self, subaction: str) -> RLRunRecord:
        """The graph-state record of this run."""
        return RLRunRecord(
            subaction=subaction,
            policy_path=self.policy_path,
            action_names=self.action_names,
            algo=self.algo,
            env_steps=self.env_steps,
            prelude_env_steps=self.prelude_env_steps,
            agent_steps=self.agent_steps,
            wall_time=self.wall_time,
            steps_per_second=self.steps_per_second,
            train_success_rate=self.train_success_rate,
            stopped_early=self.stopped_early,
            curve_path=self.curve_path,
            tensorboard_dir=self.tensorboard_dir,
        )
