"""The RL trainer: calls the RL pipeline tool per `rl` step; each policy joins the library."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from langgraph.runtime import Runtime

from rlgpt.actions.library import ActionLibrary
from rlgpt.cancel import stop_check, stop_requested
from rlgpt.execution import Job, JobNotStarted, make_executor
from rlgpt.files import atomic_write_text
from rlgpt.graph.context import Context, context_of
from rlgpt.graph.node_plugins import Role
from rlgpt.graph.review import review_rl_jobs
from rlgpt.graph.schemas import Plan, RLSetup, SubAction
from rlgpt.graph.state import ActionRecord, ErrorRecord, RLRunRecord, State
from rlgpt.logging import get_logger
from rlgpt.nodes.common import (
    action_name,
    earlier_actions,
    env_steps_left,
    error_record,
    library_dir,
    plan_of,
    task_of,
)
from rlgpt.run_paths import in_folder, portable
from rlgpt.stream_events import stream_writer
from rlgpt.tools.rl_job import RLJob, RLResult
from rlgpt.tools.rl_pipeline import train_policy

log = get_logger("rl_trainer")

#: The record of a finished (or stopped) training job, written beside its policy.
RECORD_FILE = "record.json"
#: The record's paths: relative to the run folder in the file, absolute in the state.
RECORD_PATHS = ("policy_path", "curve_path", "tensorboard_dir")


def job_dir(state: State, step_id: str) -> Path:
    """The first `rl/<step>_<k>` directory that no recorded run of the state used."""
    root = Path(state["run_dir"]) / "rl"
    used = {Path(r["policy_path"]).parent.resolve() for r in state.get("rl_runs", [])}
    k = 1
    while (root / f"{step_id}_{k}").resolve() in used:
        k += 1
    return root / f"{step_id}_{k}"


def orphaned_record(out: Path, run_dir: Path) -> RLRunRecord | None:
    """The record a cancelled attempt left in `out` (its update never reached the state),
    its paths under the run folder `run_dir`."""
    path = out / RECORD_FILE
    if not path.exists():
        return None
    try:
        record: RLRunRecord = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("rl_record_unreadable", path=str(path), error=repr(exc))
        return None
    # The attempt's update was lost with the step: it ended early whatever it reported.
    record["stopped_early"] = True
    for key in RECORD_PATHS:
        if record.get(key):
            record[key] = str(in_folder(run_dir.resolve(), record[key]))  # type: ignore[literal-required]
    return record


@dataclass
class PlannedJob:
    """An RL step's training job, with what a cancelled earlier attempt left behind."""

    step: SubAction
    job: RLJob
    orphan: RLRunRecord | None


def waves(steps: list[SubAction], setups: dict[str, Any]) -> list[list[SubAction]]:
    """The steps in groups that can train at once, in plan order.

    A step that starts after the previous ones (its prelude runs their actions) waits for
    every earlier RL step of this call: their policies are part of its start state.
    """
    groups: list[list[SubAction]] = []
    for step in steps:
        setup = RLSetup.model_validate(setups[step.id])
        if not groups or setup.start_after_previous:
            groups.append([step])
        else:
            groups[-1].append(step)
    return groups


class SB3Trainer:
    """Trains one SB3 policy per `rl` step in `todo` whose RL set-up the coder wrote.

    Independent steps train at once on the run's executor (`local`: one after another;
    `ray`: as Ray tasks); a step that starts after the previous ones waits for them.
    """

    role: ClassVar[Role] = "rl_trainer"
    name: ClassVar[str] = "sb3"

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        plan = plan_of(state)
        if plan is None:
            return {}
        ctx = context_of(runtime)
        todo = set(state.get("todo", []))
        setups = state.get("setups", {})
        steps = [
            s for s in plan.sub_actions if s.method == "rl" and s.id in todo and s.id in setups
        ]
        review = review_rl_jobs(
            [{"subaction": s.id, "timesteps": ctx.rl_timesteps, **setups[s.id]} for s in steps],
            ctx,
        )
        if review.action == "skip":
            return {
                "errors": [
                    error_record("rl_trainer", "skipped", "a reviewer skipped the RL job", s.id)
                    for s in steps
                ]
            }
        executor = make_executor(ctx.executor, ctx.ray_address)
        runs: list[RLRunRecord] = []
        library: dict[str, ActionRecord] = {}
        known: dict[str, ActionRecord] = dict(state.get("library", {}))
        errors: list[ErrorRecord] = []
        spent = 0  # env steps of this call's earlier jobs
        exhausted = False  # the run's budget ran out: no later wave starts
        for wave in waves(steps, setups):
            if exhausted:
                break
            if stop_requested():
                # Cancelled or past node_timeout: start no further training job.
                errors.append(
                    error_record("rl_trainer", "stopped", "the step was stopped", wave[0].id)
                )
                break
            planned: list[PlannedJob] = []
            allotted = 0  # env steps promised to this wave's earlier jobs
            left = env_steps_left(state, ctx)
            for step in wave:
                if left is not None and left - spent - allotted <= 0:
                    errors.append(
                        error_record(
                            "rl_trainer",
                            "budget_spent",
                            "the run's env-step budget is spent",
                            step.id,
                        )
                    )
                    exhausted = True
                    break
                item = self._plan_job(state, ctx, plan, step, setups, known, review.timesteps)
                if left is not None:
                    item.job.timesteps = min(item.job.timesteps, left - spent - allotted)
                allotted += item.job.timesteps
                planned.append(item)
            for item in planned:
                if item.orphan is not None:
                    # A cancelled attempt trained here: record what it left, then continue it.
                    log.info(
                        "rl_adopted", subaction=item.step.id, policy=item.orphan["policy_path"]
                    )
                    runs.append(item.orphan)
                    spent += item.orphan["env_steps"] + item.orphan.get("prelude_env_steps", 0)
                log.info(
                    "training",
                    subaction=item.step.id,
                    timesteps=item.job.timesteps,
                    actions=item.job.action_names,
                    executor=executor.name,
                )
            outcomes = executor.run(
                [Job(item.step.id, train_policy, (item.job,)) for item in planned],
                on_progress=stream_writer(),
                should_stop=stop_check(),
            )
            for item, outcome in zip(planned, outcomes, strict=True):
                if isinstance(outcome.error, JobNotStarted):
                    errors.append(
                        error_record("rl_trainer", "stopped", "the step was stopped", item.step.id)
                    )
                    continue
                if outcome.error is not None:
                    # A failed job must not lose the rest of the run.
                    log.warning(
                        "training_failed", subaction=item.step.id, error=repr(outcome.error)
                    )
                    errors.append(
                        error_record(
                            "rl_trainer", "training_failed", repr(outcome.error), item.step.id
                        )
                    )
                    continue
                record = self._keep(state, ctx, item, outcome.value, library, known)
                runs.append(record)
                spent += record["env_steps"] + record.get("prelude_env_steps", 0)
        return {
            "rl_runs": runs,
            "library": library,
            "errors": errors,
            "env_steps": {
                "rl": sum(r["env_steps"] for r in runs),
                "rl_prelude": sum(r.get("prelude_env_steps", 0) for r in runs),
            },
        }

    @staticmethod
    def _plan_job(
        state: State,
        ctx: Context,
        plan: Plan,
        step: SubAction,
        setups: dict[str, Any],
        known: dict[str, ActionRecord],
        reviewed_timesteps: int | None,
    ) -> PlannedJob:
        """The training job of one step, in the first folder no recorded run used."""
        setup = RLSetup.model_validate(setups[step.id])
        out = job_dir(state, step.id)
        job = ctx.rl_job(
            task=task_of(state).name,
            predicate=step.predicate,
            shaping=setup.shaping,
            library_dir=str(library_dir(state)),
            action_names=setup.code_actions,
            # Policies trained earlier in this step count as earlier actions too.
            prelude=(earlier_actions(plan, step.id, known) if setup.start_after_previous else []),
            episode_length=setup.episode_length,
            timesteps=reviewed_timesteps or ctx.rl_timesteps,
            output_dir=str(out),
            policy_name=action_name(step),
        )
        return PlannedJob(step, job, orphaned_record(out, Path(state["run_dir"])))

    @staticmethod
    def _keep(
        state: State,
        ctx: Context,
        item: PlannedJob,
        result: RLResult,
        library: dict[str, ActionRecord],
        known: dict[str, ActionRecord],
    ) -> RLRunRecord:
        """Add a trained policy to the library and record its run beside it."""
        step = item.step
        name = action_name(step)
        lib = ActionLibrary(library_dir(state))
        lib.add_policy(
            name,
            result.policy_path,
            predicate=step.predicate,
            action_names=result.action_names,
            subaction=step.id,
            description=step.description,
            max_steps=ctx.subaction_max_steps,
            algo=result.algo,
            observation=ctx.observation,
        )
        library[name] = lib.record(name)
        known[name] = library[name]
        record = result.to_record(step.id)
        # Kept beside the policy: if this step is cancelled, its update never reaches the
        # state, and the step's next run records it from here.
        out = Path(item.job.output_dir)
        atomic_write_text(out / RECORD_FILE, json.dumps(portable(record, state["run_dir"])))
        orphan = item.orphan
        if orphan is not None:
            # The continued job counts only the steps after the cancelled attempt's.
            record["env_steps"] -= orphan["env_steps"]
            record["prelude_env_steps"] = record.get("prelude_env_steps", 0) - orphan.get(
                "prelude_env_steps", 0
            )
        return record
