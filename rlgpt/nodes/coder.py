"""The fast agent: writes code actions and RL set-ups, and checks code on real episodes."""

from __future__ import annotations

from typing import Any, ClassVar

from langgraph.runtime import Runtime

from rlgpt.graph.context import Context
from rlgpt.graph.schemas import Plan, RLSetup, SubAction
from rlgpt.graph.state import ActionRecord, ErrorRecord, State, Usage, add_usage
from rlgpt.llm import LLMError, LLMSettings, ask_code, ask_structured
from rlgpt.llm.prompts import (
    coder_code_messages,
    coder_rl_messages,
    rl_setup_schema,
    skills_doc,
)
from rlgpt.logging import get_logger
from rlgpt.nodes.base import Role
from rlgpt.nodes.common import (
    context_of,
    earlier_actions,
    env_adapter,
    error_record,
    library_dir,
    plan_of,
)
from rlgpt.tools.evaluate import check_code_action
from rlgpt.tools.library import ActionLibrary
from rlgpt.tools.sandbox import CodeActionRejected, SandboxLimits, check_code

log = get_logger("coder")


def sandbox_limits(ctx: Context) -> SandboxLimits:
    """Per-call limits of a code action, from the run's context."""
    return SandboxLimits(max_steps=ctx.code_action_max_steps, wall_seconds=ctx.code_action_seconds)


class LLMCoder:
    """Writes a code action for each `code` step and an RL set-up for each `rl` step in `todo`."""

    role: ClassVar[Role] = "coder"
    name: ClassVar[str] = "llm"

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        plan = plan_of(state)
        if plan is None or not state.get("todo"):
            return {}
        ctx = context_of(runtime)
        todo = [s for s in plan.sub_actions if s.id in set(state["todo"])]
        library: dict[str, ActionRecord] = dict(state.get("library", {}))
        update: dict[str, Any] = {"library": {}, "setups": {}, "errors": [], "usage": {}}
        # Code steps first: an RL step may put any of them into its action space.
        for step in sorted(todo, key=lambda s: s.method != "code"):
            try:
                if step.method == "code":
                    record, usage, errors = self._write_code(step, plan, state, ctx)
                    update["library"][step.id] = record
                    library[step.id] = record
                else:
                    setup, usage, errors = self._write_setup(step, library, state, ctx)
                    if setup is not None:
                        update["setups"][step.id] = setup.model_dump()
            except LLMError as exc:
                log.warning("coder_llm_failed", subaction=step.id, kind=exc.kind)
                usage, errors = (
                    {},
                    [error_record("coder", f"llm_{exc.kind}", str(exc), step.id, raw=exc.raw)],
                )
            update["errors"].extend(errors)
            update["usage"] = add_usage(update["usage"], usage)
        return update

    def _write_code(
        self, step: SubAction, plan: Plan, state: State, ctx: Context
    ) -> tuple[ActionRecord, dict[str, Usage], list[ErrorRecord]]:
        adapter = env_adapter(ctx.env)
        specs = adapter.skill_specs()
        skill_names = [s.name for s in specs]
        settings = LLMSettings.for_role(ctx, "coder")
        previous = state.get("library", {}).get(step.id)
        previous_code = _read(previous["path"]) if previous and previous["kind"] == "code" else None
        feedback = state.get("feedback") or None
        usage: dict[str, Usage] = {}
        errors: list[ErrorRecord] = []
        code = ""
        for attempt in range(ctx.llm_max_retries + 1):
            messages = coder_code_messages(
                step.model_dump(), adapter.manual(), skills_doc(specs), feedback, previous_code
            )
            result = ask_code(
                "coder", settings, messages, skill_specs=specs, vocabulary=adapter.vocabulary()
            )
            usage = add_usage(usage, {"coder": result.usage})
            code = result.value.code
            try:
                check_code(code, skill_names)
                break
            except CodeActionRejected as exc:
                log.info("code_rejected", subaction=step.id, attempt=attempt, error=str(exc))
                errors.append(
                    error_record("coder", "code_rejected", str(exc), step.id, line=exc.line)
                )
                feedback, previous_code = f"The static check refused the code: {exc}", code
        lib = ActionLibrary(library_dir(state))
        try:
            check = check_code_action(
                source=code,
                name=step.id,
                predicate=step.predicate,
                library_dir=lib.root,
                prelude=earlier_actions(plan, step.id, state.get("library", {})),
                seeds=list(range(ctx.seed, ctx.seed + ctx.code_check_episodes)),
                limits=sandbox_limits(ctx),
                episode_length=ctx.subaction_max_steps * (1 + len(plan.sub_actions)),
                privileged=ctx.privileged,
            )
        except Exception as exc:  # the check's worker died: keep the code, report why
            log.warning("code_check_failed", subaction=step.id, error=repr(exc))
            errors.append(error_record("coder", "check_failed", repr(exc), step.id))
            check = {"success_rate": 0.0, "episodes": 0, "errors": [{"message": repr(exc)}]}
        log.info("code_checked", subaction=step.id, success_rate=check["success_rate"])
        lib.add_code(
            step.id,
            code,
            subaction=step.id,
            description=step.description,
            max_steps=ctx.code_action_max_steps,
            predicate=step.predicate,
            check=check,
        )
        return lib.record(step.id), usage, errors

    def _write_setup(
        self, step: SubAction, library: dict[str, ActionRecord], state: State, ctx: Context
    ) -> tuple[RLSetup | None, dict[str, Usage], list[ErrorRecord]]:
        code_actions = sorted(n for n, r in library.items() if r["kind"] == "code")
        messages = coder_rl_messages(step.model_dump(), code_actions, state.get("feedback") or None)
        items = env_adapter(ctx.env).vocabulary()["items"]
        result = ask_structured(
            "coder",
            LLMSettings.for_role(ctx, "coder"),
            RLSetup,
            messages,
            json_schema=rl_setup_schema(code_actions, items),
        )
        setup: RLSetup = result.value
        unknown = [n for n in setup.code_actions if n not in code_actions]
        errors = []
        if unknown:
            # Keep the usable part of the answer; the critic sees what was dropped.
            errors.append(
                error_record(
                    "coder",
                    "unknown_action",
                    f"RL set-up named actions not in the library: {', '.join(unknown)}",
                    step.id,
                )
            )
            setup.code_actions = [n for n in setup.code_actions if n in code_actions]
        return setup, {"coder": result.usage}, errors


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None
