"""The RL trainer: calls the RL pipeline tool per `rl` step; each policy joins the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from langgraph.runtime import Runtime

from rlgpt.actions.library import ActionLibrary
from rlgpt.cancel import stop_requested
from rlgpt.files import atomic_write_text
from rlgpt.graph.context import Context, context_of
from rlgpt.graph.node_plugins import Role
from rlgpt.graph.review import review_rl_jobs
from rlgpt.graph.schemas import RLSetup
from rlgpt.graph.state import ActionRecord, RLRunRecord, State
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
from rlgpt.tools.rl_pipeline import run_rl_job

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


class SB3Trainer:
    """Trains one SB3 policy per `rl` step in `todo` whose RL set-up the coder wrote."""

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
        runs: list[RLRunRecord] = []
        library: dict[str, ActionRecord] = {}
        known: dict[str, ActionRecord] = dict(state.get("library", {}))
        errors = []
        spent = 0  # env steps of this step's earlier jobs
        for step in steps:
            if stop_requested():
                # Cancelled or past node_timeout: start no further training job.
                errors.append(
                    error_record("rl_trainer", "stopped", "the step was stopped", step.id)
                )
                break
            left = env_steps_left(state, ctx)
            if left is not None:
                left -= spent
                if left <= 0:
                    errors.append(
                        error_record(
                            "rl_trainer",
                            "budget_spent",
                            "the run's env-step budget is spent",
                            step.id,
                        )
                    )
                    break
            setup = RLSetup.model_validate(setups[step.id])
            out = job_dir(state, step.id)
            orphan = orphaned_record(out, Path(state["run_dir"]))
            if orphan is not None:
                # A cancelled attempt trained here: record what it left, then continue it.
                log.info("rl_adopted", subaction=step.id, policy=orphan["policy_path"])
                runs.append(orphan)
                spent += orphan["env_steps"] + orphan.get("prelude_env_steps", 0)
            name = action_name(step)
            spec = task_of(state)
            budget = review.timesteps or ctx.rl_timesteps
            job = ctx.rl_job(
                task=spec.name,
                predicate=step.predicate,
                shaping=setup.shaping,
                library_dir=str(library_dir(state)),
                action_names=setup.code_actions,
                # Policies trained earlier in this step count as earlier actions too.
                prelude=(
                    earlier_actions(plan, step.id, known) if setup.start_after_previous else []
                ),
                episode_length=setup.episode_length,
                timesteps=budget if left is None else min(budget, left),
                output_dir=str(out),
                policy_name=name,
            )
            log.info(
                "training", subaction=step.id, timesteps=job.timesteps, actions=setup.code_actions
            )
            try:
                result = run_rl_job(job)
            except Exception as exc:  # a failed job must not lose the rest of the run
                log.warning("training_failed", subaction=step.id, error=repr(exc))
                errors.append(error_record("rl_trainer", "training_failed", repr(exc), step.id))
                continue
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
            atomic_write_text(out / RECORD_FILE, json.dumps(portable(record, state["run_dir"])))
            if orphan is not None:
                # The continued job counts only the steps after the cancelled attempt's.
                record["env_steps"] -= orphan["env_steps"]
                record["prelude_env_steps"] = record.get("prelude_env_steps", 0) - orphan.get(
                    "prelude_env_steps", 0
                )
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
