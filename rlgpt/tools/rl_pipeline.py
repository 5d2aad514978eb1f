"""The RL pipeline: SB3 PPO / MaskablePPO over primitives plus code actions, as a LangChain tool."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.tools import StructuredTool
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from rlgpt.actions.build import make_options_env
from rlgpt.actions.library import ActionLibrary
from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.cancel import stop_check
from rlgpt.envs.base import EnvSettings, load_adapter
from rlgpt.files import atomic_target, atomic_write_text
from rlgpt.logging import get_logger
from rlgpt.stream_events import stream_writer
from rlgpt.tools.rl_callbacks import (
    PeriodicCheckpoint,
    PhaseTimer,
    ProgressFn,
    ProgressReporter,
    StepBudget,
    StepCounter,
    StopSignal,
)
from rlgpt.tools.rl_job import RLJob, RLResult
from rlgpt.tools.vec_envs import FastDummyVecEnv, ShardedVecEnv, TimedVecEnv, local_share

log = get_logger("rlgpt.rl_pipeline")


@dataclass
class EnvFactory:
    """Picklable env constructor run inside each env worker."""

    job: RLJob
    rank: int

    def __call__(self) -> Any:
        """Build the job's env in this worker."""
        import torch

        # Policy actions may run torch inside workers; keep each to one core.
        torch.set_num_threads(1)
        return make_training_env(self.job)


def make_training_env(job: RLJob) -> Any:
    """The env a job trains on: the plugin's env of the task (or a sub-task's reward on it)
    under the options wrapper."""
    task = load_adapter(job.env).task(job.task)
    settings = env_settings(job)
    limits = SandboxLimits(
        wall_seconds=job.code_action_seconds, max_steps=job.code_action_max_steps
    )
    return make_options_env(
        job.env,
        task,
        settings,
        subtask=job.predicate,
        library=job.library_dir,
        action_names=job.action_names,
        prelude=job.prelude,
        limits=limits,
    )


def env_settings(job: RLJob) -> EnvSettings:
    """How the job's envs are built."""
    return EnvSettings(
        observation=job.observation,
        episode_length=job.episode_length,
        privileged=job.privileged,
        terminate_on_success=True,
        shaping=tuple((t.item, t.weight) for t in job.shaping),
        prefetch_worlds=job.in_process,
        skill_memory=not job.in_process,  # in-process envs run no code actions
        compiled=job.env_backend != "python",
    )


def batched_vec_env(job: RLJob) -> Any:
    """The env plugin's own batched envs for the job (see `RLJob.env_backend`), or None.

    Raises:
        ValueError: `env_backend="batched"` and the plugin cannot batch this job.
    """
    if job.env_backend == "python":
        return None
    adapter = load_adapter(job.env)
    hook = getattr(adapter, "make_vec_env", None)
    venv = None
    # Sub-task rewards come from the options env's predicate wrapper.
    if job.in_process and job.predicate is None and hook is not None:
        venv = hook(adapter.task(job.task), env_settings(job), job.n_envs)
    if venv is None and job.env_backend == "batched":
        raise ValueError(
            f"env_backend='batched': the {job.env} plugin has no batched envs for this job "
            "(they need primitive actions only and no sub-task predicate); use 'auto' or "
            "'python'"
        )
    return venv


def resolve_algo(job: RLJob) -> Literal["ppo", "maskable_ppo"]:
    """`auto` picks MaskablePPO when a code action in the action space defines `available`."""
    if job.algo != "auto":
        return job.algo
    if not job.action_names or job.library_dir is None:
        return "ppo"
    library = ActionLibrary(job.library_dir)
    maskable = any(library.get(n).has_available for n in job.action_names)
    return "maskable_ppo" if maskable else "ppo"


def algo_class(algo: Literal["ppo", "maskable_ppo"]) -> Any:
    """The SB3 class of a resolved algorithm name."""
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    from stable_baselines3 import PPO

    return PPO


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_vec_env(job: RLJob) -> Any:
    """The job's vectorized env: supervised workers when library actions run, else batched.

    Generated code must never run in the training process, so any library action (or
    prelude) means env worker processes. Plain PPO keeps its envs with the learner: one
    batched policy forward pass for all of them costs less than a worker round trip per env
    (measured: 8 envs in one process train 2x faster than 4 envs in workers on 2 cores); with
    a second core, a helper process steps a shard of them at the same time.
    """
    from rlgpt.actions.worker import prepare_forkserver

    batched = batched_vec_env(job)
    if batched is not None:
        return batched
    factories = [EnvFactory(job, rank) for rank in range(job.n_envs)]
    if job.in_process:
        if job.env_process_count > 1 and job.n_envs > 1 and _cores() > 1:
            prepare_forkserver()  # the helper starts clean: no torch threads or locks from here
            return ShardedVecEnv(factories, local_envs=local_share(job.n_envs))
        return FastDummyVecEnv(factories)  # type: ignore[arg-type]
    from rlgpt.actions.vec_workers import SupervisedSubprocVecEnv

    prepare_forkserver()
    limits = SandboxLimits(
        wall_seconds=job.code_action_seconds, max_steps=job.code_action_max_steps
    )
    # A worker ended by the sandbox's hard CPU stop (or a crash) is replaced and its
    # episode ends with a structured error; training goes on.
    return SupervisedSubprocVecEnv(factories, start_method="forkserver", limits=limits)


def _vec_env_kind(vec_env: Any) -> str:
    from rlgpt.actions.vec_workers import SupervisedSubprocVecEnv

    if isinstance(vec_env, ShardedVecEnv):
        return "sharded"
    if isinstance(vec_env, FastDummyVecEnv):
        return "dummy"
    return "subproc" if isinstance(vec_env, SupervisedSubprocVecEnv) else "batched"


def _save_model(model: Any, path: Path) -> None:
    """Save an SB3 model so that a reader (or a killed writer) never leaves a torn zip."""
    # The temporary name has a suffix, so SB3 writes it as is (it adds `.zip` to bare names).
    with atomic_target(path) as tmp:
        model.save(tmp)


@dataclass
class ResumePoint:
    """The last resumable state of a training job: `resume.zip` + `resume.json` in its dir.

    The policy is written first and the counters last, each atomically, so the JSON only
    ever names a complete policy.
    """

    out: Path

    @property
    def policy(self) -> Path:
        """The checkpointed policy."""
        return self.out / "resume.zip"

    @property
    def counters(self) -> Path:
        """The checkpointed counters and finished episodes."""
        return self.out / "resume.json"

    def save(self, model: Any, counter: StepCounter) -> None:
        """Checkpoint the model and the job's counters."""
        _save_model(model, self.policy)
        atomic_write_text(self.counters, json.dumps(counter.counters()))

    def load(self) -> dict[str, Any] | None:
        """The counters of the last checkpoint, or None when there is none (or it is unusable)."""
        if not (self.counters.exists() and self.policy.exists()):
            return None
        try:
            data: dict[str, Any] = json.loads(self.counters.read_text())
        except (OSError, ValueError) as exc:
            log.warning("rl_resume_unreadable", path=str(self.counters), error=repr(exc))
            return None
        return data


def train_policy(
    job: RLJob,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RLResult:
    """Train PPO / MaskablePPO on primitives + library actions within an env-step budget.

    Args:
        job: The job description.
        on_progress: Receives `rl_progress` event dicts during and at the end of training.
        should_stop: Polled every agent step; True stops training (the policy is still saved).

    Returns:
        Paths and measured numbers of the run.
    """
    import torch

    torch.set_num_threads(1)
    # Argument checks of torch distributions cost more than the small policy's forward pass.
    torch.distributions.Distribution.set_default_validate_args(False)
    started = time.monotonic()
    if job.library_dir is not None:
        # Fail here with a clear message rather than as a dead env worker.
        library = ActionLibrary(job.library_dir)
        for name in [*job.action_names, *job.prelude]:
            library.get(name)
    algo = resolve_algo(job)
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    vec_env = make_vec_env(job)
    timed_env = TimedVecEnv(vec_env)
    tb_dir, tb_note = "", ""
    if _tensorboard_available():
        tb_dir = str(out / "tensorboard")
    else:
        tb_note = "tensorboard is not installed; no TensorBoard logs were written"
    policy = "MlpPolicy" if job.observation == "symbolic" else "CnnPolicy"
    kwargs = job.ppo_kwargs() | {"tensorboard_log": tb_dir or None}
    resume = ResumePoint(out)
    counter = StepCounter()
    stop = StopSignal(should_stop or (lambda: False))
    model: Any = None
    phases = PhaseTimer()
    callbacks: list[BaseCallback] = [
        phases,
        counter,
        ProgressReporter(counter, job.policy_name, job.timesteps, job.progress_every, on_progress),
    ]
    if job.checkpoint_every:
        callbacks.append(
            PeriodicCheckpoint(counter, job.checkpoint_every, lambda: resume.save(model, counter))
        )
    callbacks += [StepBudget(counter, job.timesteps), stop]
    try:
        algo_cls = algo_class(algo)
        counters = resume.load() if job.checkpoint_every else None
        if counters is not None:
            # An earlier attempt was interrupted: continue from its last saved policy.
            model = algo_cls.load(
                resume.policy, env=timed_env, device="cpu", tensorboard_log=tb_dir or None
            )
            counter.restore(counters)
            log.info("rl_resumed", policy=job.policy_name, env_steps=counter.env_steps)
        else:
            model = algo_cls(policy, timed_env, **kwargs)
        resumed_from = counter.env_steps
        # SB3 seeds env i with `seed + i`; a resumed attempt moves on to unused worlds.
        vec_env.seed(job.first_env_seed(counter.resumes))
        # Agent steps never exceed env steps, so the env-step budget ends training first.
        remaining = job.timesteps - counter.budgeted_steps
        training_rate = 0.0
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=CallbackList(callbacks),
                tb_log_name=job.policy_name,
                progress_bar=False,
                reset_num_timesteps=counters is None,
            )
            training_rate = counter.training_rate
        policy_path = out / f"{job.policy_name}.zip"
        _save_model(model, policy_path)
        if job.checkpoint_every:
            resume.save(model, counter)
    finally:
        vec_env.close()
    wall = time.monotonic() - started
    curve_path = out / f"{job.policy_name}.curve.json"
    # One record per finished episode; `env_steps` is the training total when it ended.
    atomic_write_text(curve_path, json.dumps(counter.episodes, indent=1) + "\n")
    return RLResult(
        policy_path=str(policy_path.resolve()),
        action_names=list(job.action_names),
        algo=algo,
        env_steps=counter.env_steps,
        prelude_env_steps=counter.prelude_env_steps,
        agent_steps=counter.agent_steps,
        episodes=len(counter.episodes),
        wall_time=round(wall + (counter.earlier_seconds or 0.0), 3),
        wall_time_complete=counter.earlier_seconds is not None,
        steps_per_second=round((counter.env_steps - resumed_from) / max(wall, 1e-9), 1),
        training_steps_per_second=round(training_rate, 1),
        train_success_rate=counter.success_rate,
        stopped_early=stop.stopped and counter.budgeted_steps < job.timesteps,
        curve_path=str(curve_path.resolve()),
        tensorboard_dir=str(Path(tb_dir).resolve()) if tb_dir else "",
        tensorboard_note=tb_note,
        vec_env=_vec_env_kind(vec_env),
        resumed_from=resumed_from,
        resumes=counter.resumes,
        phase_seconds=phases.phases(timed_env.seconds, wall),
    )


def run_rl_job(job: RLJob) -> RLResult:
    """Train one job inside a graph step: progress goes to LangGraph's custom stream and the
    step's stop signal (cancel, node timeout) ends training early, keeping the policy."""
    return train_policy(job, on_progress=stream_writer(), should_stop=stop_check())


def _run_rl_pipeline(**kwargs: Any) -> dict[str, Any]:
    return run_rl_job(RLJob.model_validate(kwargs)).model_dump()


rl_pipeline = StructuredTool.from_function(
    func=_run_rl_pipeline,
    name="rl_pipeline",
    description=(
        "Train a PPO / MaskablePPO policy whose action space is the env's primitive actions "
        "plus the named library actions (code actions run as options). Returns the saved "
        "policy path and measured numbers; streams `rl_progress` events."
    ),
    args_schema=RLJob,
)
