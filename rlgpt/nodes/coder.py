"""The fast agent: writes code actions and RL set-ups, and checks code on real episodes."""

from __future__ import annotations

import ast
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar

from langgraph.runtime import Runtime

from rlgpt.actions.grammar import code_grammar
from rlgpt.actions.library import ActionLibrary, SharedLibrary
from rlgpt.actions.sandbox import CodeActionRejected, check_code
from rlgpt.envs.base import EnvSettings, load_adapter
from rlgpt.graph.context import Context, context_of
from rlgpt.graph.node_plugins import Role
from rlgpt.graph.schemas import Plan, RLSetup, SubAction
from rlgpt.graph.state import ActionRecord, ErrorRecord, State, Usage, merge_usage
from rlgpt.llm import LLMError, ask_code, ask_structured
from rlgpt.logging import get_logger
from rlgpt.nodes.common import (
    action_name,
    earlier_actions,
    error_record,
    library_dir,
    plan_of,
    task_of,
)
from rlgpt.nodes.prompts import (
    coder_code_messages,
    coder_rl_messages,
    rl_setup_schema,
    skills_doc,
)
from rlgpt.nodes.prompts.common import manual_lines
from rlgpt.nodes.shared_policies import adopt_policy
from rlgpt.tools.code_check import check_code_action

log = get_logger("coder")


@dataclass(frozen=True)
class Reuse:
    """What the shared library offers a step before the coder is asked."""

    best: tuple[str, dict[str, Any], str] | None  # (code, check, origin) of the best one checked
    exact: bool  # `best` is stored for this very predicate (a failure is repaired by the coder)
    similar: list[tuple[str, str]]  # (label, code) of similar ones that failed, for the prompt
    env_steps: int  # env steps the checks took


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
        update: dict[str, Any] = {
            "library": {},
            "setups": {},
            "errors": [],
            "usage": {},
            "env_steps": {"code_check": 0},
        }
        # Code steps first: an RL step may put any of them into its action space.
        for step in sorted(todo, key=lambda s: s.method != "code"):
            try:
                if step.method == "code":
                    record, usage, errors, checked = self._write_code(
                        step, plan, state, library, ctx
                    )
                    update["env_steps"]["code_check"] += checked
                    update["library"][step.id] = record
                    library[step.id] = record
                elif (adopted := self._adopt(step, library, state, ctx)) is not None:
                    # A shared policy for this check: no set-up, so nothing is trained.
                    update["library"].update(adopted)
                    library.update(adopted)
                    usage, errors = {}, []
                else:
                    setup, usage, errors = self._write_setup(step, library, state, ctx)
                    if setup is not None:
                        update["setups"][step.id] = setup.model_dump()
            except LLMError as exc:
                if exc.retryable:
                    raise  # the endpoint is down: stop the run, keep its state, resume later
                log.warning("coder_llm_failed", subaction=step.id, kind=exc.kind)
                usage, errors = (
                    {},
                    [error_record("coder", f"llm_{exc.kind}", str(exc), step.id, raw=exc.raw)],
                )
            update["errors"].extend(errors)
            update["usage"] = merge_usage(update["usage"], usage)
        return update

    def _write_code(
        self,
        step: SubAction,
        plan: Plan,
        state: State,
        library: dict[str, ActionRecord],
        ctx: Context,
    ) -> tuple[ActionRecord, dict[str, Usage], list[ErrorRecord], int]:
        """Reuse a stored action that passes here, else write one and repair it with the
        check's failure traces until it passes `code_pass_rate` of the check's episodes or
        `code_repairs` repairs are spent; the best attempt is kept. Also returns the env
        steps the checks took."""
        lib = ActionLibrary(library_dir(state))
        previous = library.get(step.id)
        previous_code = _read(previous["path"]) if previous and previous["kind"] == "code" else None
        feedback = state.get("feedback") or None
        usage: dict[str, Usage] = {}
        errors: list[ErrorRecord] = []
        best: tuple[str, dict[str, Any], str] | None = None  # (code, check, origin)
        checked = 0

        adapter = load_adapter(ctx.env)
        skills = [spec.name for spec in adapter.skill_specs()]
        manual = adapter.manual()
        shared = SharedLibrary(ctx.shared_library_dir(), ctx.env) if ctx.reuse_library else None
        similar: list[tuple[str, str]] = []
        if shared is not None and previous is None:
            reuse = self._reuse(step, plan, state, library, ctx, shared, errors)
            best, similar, checked = reuse.best, reuse.similar, reuse.env_steps
            if reuse.exact and best is not None and best[1]["success_rate"] < ctx.code_pass_rate:
                feedback = check_feedback(best[1], step, skills, best[0], manual)
                previous_code = best[0]

        attempts = 0
        while attempts <= ctx.code_repairs and (
            best is None or best[1]["success_rate"] < ctx.code_pass_rate
        ):
            attempts += 1
            answer, spent = self._ask_code(
                step, plan, ctx, feedback, previous_code, errors, attempts - 1, similar
            )
            usage = merge_usage(usage, spent)
            if answer is None:
                break
            check = self._check(answer, step, plan, state, library, ctx, errors)
            checked += int(check.get("env_steps", 0))
            log.info(
                "code_checked", subaction=step.id, attempt=attempts, rate=check["success_rate"]
            )
            if best is None or check["success_rate"] > best[1]["success_rate"]:
                best = (answer, check, f"written by the coder (attempt {attempts})")
            if earlier_steps_failed(check):
                # Nothing this step's code does can make up for that: the critic sees it.
                log.info("code_check_prelude_failed", subaction=step.id)
                break
            feedback = check_feedback(check, step, skills, answer, manual)
            previous_code = answer
        if best is None:
            best = (previous_code or "", {"success_rate": 0.0, "episodes": 0}, "no usable code")
        code, check, origin = best
        lib.add_code(
            step.id,
            code,
            subaction=step.id,
            description=f"{step.description} ({origin})",
            max_steps=ctx.code_action_max_steps,
            predicate=step.predicate,
            check=check,
            origin=origin,
        )
        if shared is not None and check["success_rate"] >= ctx.success_threshold:
            shared.publish(step.predicate, code, step.description, check)
        return lib.record(step.id), usage, errors, checked

    def _reuse(
        self,
        step: SubAction,
        plan: Plan,
        state: State,
        library: dict[str, ActionRecord],
        ctx: Context,
        shared: SharedLibrary,
        errors: list[ErrorRecord],
    ) -> Reuse:
        """A shared action for `step`, checked from this run's start state: the one stored for
        the same predicate, else up to `library_candidates` found by meaning above
        `library_min_similarity` (the first that passes `code_pass_rate` is used; those that
        fail come back as examples for the coder). Every check is counted in the library."""
        found = shared.find(step.predicate)
        if found is not None:
            code, entry = found
            check = self._check(code, step, plan, state, library, ctx, errors)
            passed = check["success_rate"] >= ctx.code_pass_rate
            shared.record_reuse(entry.name, entry.version, check["success_rate"], None, passed)
            log.info("code_reused", subaction=step.id, success_rate=check["success_rate"])
            origin = f"reused from the shared library (version {entry.version})"
            return Reuse((code, check, origin), True, [], int(check.get("env_steps", 0)))
        if ctx.library_candidates < 1:
            return Reuse(None, False, [], 0)
        query = shared.text(step.description, step.predicate, ctx.env)
        matches = [
            m
            for m in shared.search(
                query, ctx.library_candidates, frozenset({shared.key(step.predicate)})
            )
            if m.similarity >= ctx.library_min_similarity
        ]
        best: tuple[str, dict[str, Any], str] | None = None
        similar: list[tuple[str, str]] = []
        env_steps = 0
        for match in matches:
            entry, similarity = match.entry, match.similarity
            check = self._check(match.source, step, plan, state, library, ctx, errors)
            env_steps += int(check.get("env_steps", 0))
            rate = check["success_rate"]
            passed = rate >= ctx.code_pass_rate
            shared.record_reuse(entry.name, entry.version, rate, similarity, passed)
            log.info(
                "code_candidate_checked",
                subaction=step.id,
                candidate=entry.name,
                similarity=round(similarity, 3),
                success_rate=rate,
            )
            where = f"version {entry.version}, similarity {similarity:.2f}; {entry.name}"
            if passed:
                origin = f"reused from the shared library ({where})"
                return Reuse((match.source, check, origin), False, similar, env_steps)
            if best is None or rate > best[1]["success_rate"]:
                best = (match.source, check, f"from the shared library ({where}), failed its check")
            label = (
                f"{entry.description.rstrip('.')}; it held in "
                f"{check.get('successes', 0)} of {check.get('episodes', 0)} episodes"
            )
            similar.append((label, match.source))
        return Reuse(best, False, similar, env_steps)

    def _ask_code(
        self,
        step: SubAction,
        plan: Plan,
        ctx: Context,
        feedback: str | None,
        previous_code: str | None,
        errors: list[ErrorRecord],
        repair: int = 0,
        similar: list[tuple[str, str]] | None = None,
    ) -> tuple[str | None, dict[str, Usage]]:
        """One code answer that passes the static check (with a retry per refusal);
        repairs (`repair` > 0) sample at `repair_temperature` with a seed of their own.
        `similar` are stored actions for similar steps that failed this step's check."""
        adapter = load_adapter(ctx.env)
        specs = adapter.skill_specs()
        skill_names = [s.name for s in specs]
        settings = ctx.llm_settings("coder")
        if repair:
            temperature = max(settings.temperature, ctx.repair_temperature)
            settings = settings.model_copy(
                update={"temperature": temperature, "seed": settings.seed * 100 + repair}
            )
        earlier = [s.model_dump() for s in plan.sub_actions[: plan.sub_actions.index(step)]]
        grammar = code_grammar(specs, adapter.vocabulary())
        usage: dict[str, Usage] = {}
        for attempt in range(ctx.llm_max_retries + 1):
            messages = coder_code_messages(
                step.model_dump(),
                adapter.manual(),
                skills_doc(specs),
                feedback,
                previous_code,
                earlier,
                similar or (),
            )
            result = ask_code("coder", settings, messages, grammar=grammar)
            usage = merge_usage(usage, {"coder": result.usage})
            code = result.value.code
            try:
                check_code(code, skill_names)
                return code, usage
            except CodeActionRejected as exc:
                log.info("code_rejected", subaction=step.id, attempt=attempt, error=str(exc))
                errors.append(
                    error_record("coder", "code_rejected", str(exc), step.id, line=exc.line)
                )
                feedback, previous_code = f"The static check refused the code: {exc}", code
        return None, usage

    def _check(
        self,
        code: str,
        step: SubAction,
        plan: Plan,
        state: State,
        library: dict[str, ActionRecord],
        ctx: Context,
        errors: list[ErrorRecord],
    ) -> dict[str, Any]:
        """The code run on real episodes after the plan's earlier steps (as written so far
        in this coder step, so a new step starts where the new earlier steps leave it)."""
        try:
            return check_code_action(
                source=code,
                name=step.id,
                predicate=step.predicate,
                library_dir=library_dir(state),
                prelude=earlier_actions(plan, step.id, library),
                seeds=list(range(ctx.seed, ctx.seed + ctx.code_check_episodes)),
                limits=ctx.sandbox_limits(),
                task=task_of(state),
                settings=EnvSettings(
                    episode_length=ctx.subaction_max_steps * (1 + len(plan.sub_actions)),
                    privileged=ctx.privileged,
                ),
            )
        except Exception as exc:  # the check's worker died: keep the code, report why
            log.warning("code_check_failed", subaction=step.id, error=repr(exc))
            errors.append(error_record("coder", "check_failed", repr(exc), step.id))
            return {"success_rate": 0.0, "episodes": 0, "errors": [{"message": repr(exc)}]}

    @staticmethod
    def _adopt(
        step: SubAction, library: dict[str, ActionRecord], state: State, ctx: Context
    ) -> dict[str, ActionRecord] | None:
        """The shared library's policy for an `rl` step that has none in this run yet."""
        name = action_name(step)
        if not ctx.reuse_library or name in library:
            return None
        return adopt_policy(state, ctx, step, name)

    def _write_setup(
        self, step: SubAction, library: dict[str, ActionRecord], state: State, ctx: Context
    ) -> tuple[RLSetup | None, dict[str, Usage], list[ErrorRecord]]:
        # Code actions and the policies trained for other steps can join its action space.
        code_actions = sorted(n for n in library if n != action_name(step))
        messages = coder_rl_messages(step.model_dump(), code_actions, state.get("feedback") or None)
        items = load_adapter(ctx.env).vocabulary().get("items", [])
        result = ask_structured(
            "coder",
            ctx.llm_settings("coder"),
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


def earlier_steps_failed(check: dict[str, Any]) -> bool:
    """True when every failed episode of a check failed already in the earlier steps."""
    failed = [r for r in check.get("results") or [] if not r.get("success")]
    return bool(failed) and all(r.get("prelude_ok") is False for r in failed)


def check_feedback(
    check: dict[str, Any],
    step: SubAction,
    skills: Collection[str] | None = None,
    code: str = "",
    manual: str = "",
    episodes: int = 2,
) -> str:
    """What the check saw, for the next attempt: failing episodes with why, the inventory
    at the end and the last skill calls, and the errors.

    `skills` are the env's skill names (None: any); hints name only skills it has. With
    the checked `code` and the env's `manual`, things the code walks to that the manual's
    lines about the step never name are pointed out.
    """
    results = check.get("results") or []
    failed = [r for r in results if not r.get("success")]
    lines = [
        f"Run on {check.get('episodes', 0)} episodes, the check ({step.predicate.describe()}) "
        f"held in {check.get('successes', 0)}."
    ]
    for result in failed[:episodes]:
        inventory = ", ".join(f"{k} {v}" for k, v in result.get("inventory", {}).items())
        lines.append(
            f"Episode {result.get('seed')}: {result.get('reason', 'failed')}; inventory at the "
            f"end: {inventory or 'empty'}."
        )
        trace = result.get("trace") or []
        if trace:
            lines.append("Last skill calls: " + "; ".join(trace[-8:]))
    for error in (check.get("errors") or [])[:2]:
        where = f" at line {error['line']}" if error.get("line") else ""
        lines.append(f"Error{where}: {error.get('kind', 'error')}: {error.get('message', '')}")
    short = _stopped_short(failed, step)
    if short and (skills is None or "count" in skills):
        lines.append(short)
    stray = _unnamed_targets(code, step, manual)
    if stray:
        lines.append(stray)
    gave_up = any("without taking any env step" in str(r.get("reason", "")) for r in failed)
    if gave_up and (skills is None or "explore" in skills):
        # The commonest small-model mistake, said in the skill API's own terms.
        lines.append(
            "It gave up before acting. When what it needs is not seen yet, call "
            "api.explore() and look again instead of returning False."
        )
    return "\n".join(lines)


def _stopped_short(failed: list[dict[str, Any]], step: SubAction) -> str:
    """A hint when the action ended with too few of the item its check counts: small models
    bound their loops by a guess that is often too small, or return True on `has`."""
    pred = step.predicate
    if pred.kind != "inventory":
        return ""

    def held(ended: str) -> list[int]:
        got = [
            int(r.get("inventory", {}).get(pred.name, 0))
            for r in failed
            if str(r.get("reason", "")).startswith(f"the action returned {ended} after")
        ]
        return [n for n in got if n < pred.at_least]

    claimed = held("True")
    if claimed:
        return (
            f"It returned True holding {max(claimed)} {pred.name} of the {pred.at_least} the "
            f"check needs: return True only once api.count({pred.name!r}) >= {pred.at_least}."
        )
    short = [n for n in held("False") if n > 0]
    if not short:
        return ""
    tries = max(20, 5 * pred.at_least)
    return (
        f"It returned False holding {max(short)} {pred.name} of the {pred.at_least} the check "
        f"needs: its loop ended too early. A pass gets at most one {pred.name} and may fail, "
        f"so give it several tries for each one, e.g. `for _ in range({tries}):`."
    )


def _unnamed_targets(code: str, step: SubAction, manual: str) -> str:
    """A hint when the code looks for or walks to things that the manual's lines about the
    step never name: a small model copies them from similar code (a furnace sought for a
    stone pickaxe, which needs a table)."""
    lines = manual_lines(manual, [step.id, step.predicate.name], 4)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ""  # the check's error says so already
    if not lines:
        return ""
    named = set(re.findall(r"[a-z_]+", " ".join(lines).lower()))
    targets = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("seen", "move_to")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]
    stray = [t for t in dict.fromkeys(targets) if t not in named]
    if not stray:
        return ""
    return (
        f"The code looks for {', '.join(stray)}, which the manual's lines about {step.id} do "
        f"not name: {' '.join(lines)}"
    )


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None
