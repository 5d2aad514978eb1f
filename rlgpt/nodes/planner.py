"""The slow agent: decomposes the task into sub-actions, each marked `code` or `rl`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from langgraph.runtime import Runtime

from rlgpt.envs.base import EnvAdapter, Predicate, TaskSpec, load_adapter
from rlgpt.graph.context import Context, context_of
from rlgpt.graph.node_plugins import Role
from rlgpt.graph.schemas import MAX_STEPS, Plan, PlanInvalidError, SubAction, check_plan
from rlgpt.graph.state import CurriculumRound, State, Usage, merge_usage
from rlgpt.llm import LLMError, ask_structured
from rlgpt.logging import get_logger
from rlgpt.nodes.common import error_record, plan_of, task_of
from rlgpt.nodes.curriculum import (
    extend,
    first_targets,
    keep_checks,
    kept_steps,
    last_evaluation,
    mastered,
    missed_targets,
    misses,
    on_curriculum,
    progress_text,
    restored,
    round_record,
    set_aside,
)
from rlgpt.nodes.prompts import (
    CURRICULUM_ROUND,
    manual_lines,
    planner_messages,
    planner_schema,
    skills_summary,
)

log = get_logger("planner")


class LLMPlanner:
    """Asks the planner model for a schema-constrained `Plan` and checks it against the env."""

    role: ClassVar[Role] = "planner"
    name: ClassVar[str] = "llm"

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = context_of(runtime)
        adapter = load_adapter(ctx.env)
        task = task_of(state)
        returning = bool(state.get("plan_history"))
        feedback = state.get("feedback") if returning else None
        previous = state.get("plan") if returning else None
        start = RoundStart.of(state, ctx, adapter) if on_curriculum(state, ctx) else None
        if start is not None:
            previous = None  # the kept steps are in the round's text; the model adds to them
        settings = ctx.llm_settings("planner")
        usage: dict[str, Usage] = {}
        errors: list[Any] = []
        best: tuple[tuple[int, int], Plan, list[str]] | None = None
        for revision in range(ctx.plan_revisions + 1):
            messages = planner_messages(
                task.name,
                task.description,
                adapter.manual(),
                skills_summary(adapter.skill_specs()),
                feedback,
                previous,
                progress=start.text if start is not None else None,
                code_only=not ctx.allow_rl,
            )
            try:
                result = ask_structured(
                    "planner",
                    settings,
                    Plan,
                    messages,
                    json_schema=planner_schema(adapter.vocabulary(), ctx.allow_rl),
                )
            except LLMError as exc:
                if exc.retryable:
                    raise  # the endpoint is down: stop the run, keep its state, resume later
                log.warning("plan_failed", kind=exc.kind, error=str(exc))
                if exc.usage:
                    usage = merge_usage(usage, {"planner": cast(Usage, exc.usage)})
                errors.append(error_record("planner", f"llm_{exc.kind}", str(exc), raw=exc.raw))
                break
            usage = merge_usage(usage, {"planner": result.usage})
            try:
                plan = check_plan(result.value, adapter)
            except PlanInvalidError as exc:
                log.warning("plan_invalid", error=str(exc))
                errors.append(error_record("planner", "invalid_plan", str(exc), raw=result.raw))
                feedback, previous = (
                    f"The plan names unknown things: {exc}",
                    result.value.model_dump(),
                )
                continue
            if not ctx.allow_rl:
                plan = coded(plan)
            if start is not None:
                plan, _ = extend(start.kept, plan)
            # The task's goal step, if the model left it out, is added before the rules look.
            plain = without_done_at_start(without_repeats(plan), adapter)
            plan, problems = checked_by_rules(adapter, with_goal_step(plain, task))
            if start is not None:
                # The rules' order decides what comes next; the counts are those of what is
                # left after the cut; a kept step keeps the count it passed with.
                plan = first_targets(
                    restored(start.kept, plan),
                    start.kept,
                    start.mastered,
                    ctx.curriculum_targets,
                    start.aside,
                )
                plan, problems = checked_by_rules(adapter, plan)
                plan = keep_checks(start.kept, plan)
            missing = goal_problems(plan, task)  # only when the plan had no room for it
            if start is not None and not start.added(plan):
                missing.append(
                    "the plan adds no step after the kept ones: choose an achievement the "
                    "agent does not unlock reliably yet"
                )
            problems = missing + problems
            # A revision no worse than the best so far wins: it answers the latest feedback.
            rank = (len(missing), len(problems))
            if best is None or rank <= best[0]:
                best = (rank, plan, problems)
            if not problems:
                break
            log.info("plan_lacks", revision=revision, problems=problems)
            feedback = rules_feedback(problems, adapter.manual())
            previous = plan.model_dump()
        update: dict[str, Any] = {"usage": usage, "errors": errors}
        if best is None:
            update["todo"] = []
            if start is not None:
                # A round without a plan still counts: the rounds bound a failing planner.
                update["curriculum"] = [start.record(state, None, ctx.success_threshold)]
            return update
        _, plan, problems = best
        if problems:
            # The plan goes ahead; the critic sees what the rules found and can send it back.
            update["errors"].append(
                error_record("planner", "plan_lacks", "; ".join(problems), plan=plan.model_dump())
            )
        dumped = plan.model_dump()
        todo = [s.id for s in plan.sub_actions]
        if start is not None:
            todo = start.added(plan)
            record = start.record(state, plan, ctx.success_threshold)
            log.info("curriculum_round", round=record["round"], targets=record["targets"],
                     kept=record["kept"], added=record["added"])  # fmt: skip
            update["curriculum"] = [record]
        log.info("planned", steps=[(s.id, s.method) for s in plan.sub_actions])
        update.update(plan=dumped, plan_history=[dumped], todo=todo, feedback="")
        return update


@dataclass(frozen=True)
class RoundStart:
    """Where a curriculum round starts: the steps it keeps, the targets the last round
    missed, and the text that tells the model so."""

    kept: list[SubAction]
    missed: list[str]
    mastered: dict[str, float]
    text: str
    aside: frozenset[str]

    @classmethod
    def of(cls, state: State, ctx: Context, adapter: EnvAdapter) -> RoundStart:
        """The start of the next round of `state`'s curriculum."""
        threshold = ctx.success_threshold
        ev = last_evaluation(state)
        kept = kept_steps(plan_of(state), ev, threshold)
        missed = missed_targets(state, threshold)
        counts = misses(state, missed)
        progress = progress_text(kept, ev, counts, adapter.achievements(), threshold)
        number = len(state.get("curriculum", [])) + 1
        text = CURRICULUM_ROUND.format(round=number, progress=progress, k=ctx.curriculum_targets)
        return cls(kept, missed, mastered(ev, threshold), text, set_aside(counts))

    def added(self, plan: Plan) -> list[str]:
        """The ids of the plan's steps this round added."""
        kept = {s.id for s in self.kept}
        return [s.id for s in plan.sub_actions if s.id not in kept]

    def record(self, state: State, plan: Plan | None, threshold: float) -> CurriculumRound:
        """The round's record, once its plan is chosen (None: the model gave none)."""
        added = self.added(plan) if plan is not None else []
        return round_record(state, self.kept, plan, added, self.missed, threshold)


def coded(plan: Plan) -> Plan:
    """The plan with every step a code action (an agent that learns nothing by RL)."""
    steps = [
        s if s.method == "code" else s.model_copy(update={"method": "code"})
        for s in plan.sub_actions
    ]
    return plan.model_copy(update={"sub_actions": steps})


def unmet_goals(plan: Plan, task: TaskSpec) -> list[Predicate]:
    """The task's goals that no step of the plan checks (none for the open-ended score)."""
    if task.score:
        return []
    return [g for g in task.predicates if not any(s.predicate.covers(g) for s in plan.sub_actions)]


def goal_problems(plan: Plan, task: TaskSpec) -> list[str]:
    """A plan for a task with a goal must have a step whose check is that goal."""
    return [
        f"no step checks the task's goal ({goal.describe()}); end the plan with a step "
        f"whose success predicate is {goal.kind} {goal.name}"
        for goal in unmet_goals(plan, task)
    ]


def without_repeats(plan: Plan) -> Plan:
    """The plan without steps that check an achievement an earlier step already checks:
    an achievement stays unlocked, so such a step is done before it starts."""
    seen: set[str] = set()
    steps = []
    for step in plan.sub_actions:
        if step.predicate.kind == "achievement":
            if step.predicate.name in seen:
                log.info("plan_repeat_dropped", step=step.id, check=step.predicate.describe())
                continue
            seen.add(step.predicate.name)
        steps.append(step)
    return (
        plan
        if len(steps) == len(plan.sub_actions)
        else plan.model_copy(update={"sub_actions": steps})
    )


def without_done_at_start(plan: Plan, adapter: EnvAdapter) -> Plan:
    """The plan without inventory steps that hold when an episode starts (food >= 3 while
    the player starts with 9): such a step is done before it starts, and an RL job for it
    would end every episode at once. Kept when nothing else would be left. Uses the env's
    optional `initial_inventory()`."""
    initial: dict[str, int] = getattr(adapter, "initial_inventory", dict)()

    def done(step: SubAction) -> bool:
        pred = step.predicate
        return pred.kind == "inventory" and pred.at_least <= initial.get(pred.name, 0)

    steps = [s for s in plan.sub_actions if not done(s)]
    if not steps or len(steps) == len(plan.sub_actions):
        return plan
    dropped = [s.id for s in plan.sub_actions if done(s)]
    log.info("plan_done_at_start_dropped", steps=dropped)
    return plan.model_copy(update={"sub_actions": steps})


def with_goal_step(plan: Plan, task: TaskSpec) -> Plan:
    """The plan with a last step for each goal no step checks (the task itself, to code).

    A small model asked for a revision sometimes drops the goal step altogether; the task's
    own predicate is the one step every plan for it needs.
    """
    room = MAX_STEPS - len(plan.sub_actions)
    added = [
        SubAction(
            id=goal.name,
            description=f"Reach the task's goal: {goal.describe()}.",
            predicate=goal,
            method="code",
            reason="The plan did not reach the task's goal; added as its last step.",
        )
        for goal in unmet_goals(plan, task)[: max(room, 0)]
    ]
    if not added:
        return plan
    log.info("plan_goal_added", steps=[s.id for s in added])
    # Validated again: an added step's id gets a suffix if a step already has it.
    dumped = [s.model_dump() for s in [*plan.sub_actions, *added]]
    return Plan.model_validate({**plan.model_dump(), "sub_actions": dumped})


def checked_by_rules(adapter: EnvAdapter, plan: Plan) -> tuple[Plan, list[str]]:
    """The plan with the rules' counts applied and steps reordered where that removes a
    problem; returns what the rules still find."""
    problems, fixed = rule_problems(adapter, plan)
    if fixed:
        log.info("plan_counts_fixed", counts=fixed)
    if problems:
        plan, problems = reorder_by_rules(adapter, plan, problems)
    return plan, problems


def rules_feedback(problems: list[str], manual: str) -> str:
    """The rules' findings, with the manual's lines about the achievements they name."""
    # The findings name what would fix them in parentheses: "(collect_wood, inventory ...)".
    groups = [g for p in problems for g in re.findall(r"\(([^)]*)\)", p)]
    words = [w for g in groups for w in re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", g)]
    lines = manual_lines(manual, list(dict.fromkeys(words)))
    text = "The game's rules say this plan lacks: " + "; ".join(problems)
    return text + ("\nManual lines that help:\n" + "\n".join(lines) if lines else "")


def reorder_by_rules(
    adapter: EnvAdapter, plan: Plan, problems: list[str]
) -> tuple[Plan, list[str]]:
    """The plan's steps in the order the env's rules can follow, the model's order wherever
    the rules allow it: each place takes the first remaining step that adds no problem
    there (the first remaining step if none can). Kept only if the rules then find fewer
    problems. An order the rules can check needs no model call, and a small model often
    keeps a step too late however it is told."""
    check = adapter.plan_problems  # type: ignore[attr-defined]  # present: it found problems

    def count(steps: list[SubAction]) -> int:
        return len(check([(s.id, s.predicate) for s in steps])[0])

    order: list[SubAction] = []
    rest = list(plan.sub_actions)
    while rest:
        now = count(order)
        step = next((s for s in rest if count([*order, s]) == now), rest[0])
        order.append(step)
        rest.remove(step)
    if count(order) >= len(problems):
        return plan, problems
    log.info("plan_reordered", steps=[s.id for s in order])
    reordered = plan.model_copy(update={"sub_actions": order})
    found, fixed = rule_problems(adapter, reordered)
    if fixed:
        log.info("plan_counts_fixed", counts=fixed)
    return reordered, found


def rule_problems(adapter: EnvAdapter, plan: Plan) -> tuple[list[str], dict[str, str]]:
    """What the env's rules say the plan lacks ([] when the adapter has no such check).

    Counts are arithmetic a small model gets wrong: a collecting step that collects fewer
    than the later steps use, or asks for more than the inventory holds, gets the check the
    rules compute, in place (returned as step id -> the new check, in words).
    """
    check = getattr(adapter, "plan_problems", None)
    if check is None:
        return [], {}
    problems, counts = check([(s.id, s.predicate) for s in plan.sub_actions])
    fixed: dict[str, str] = {}
    for step in plan.sub_actions:
        if step.id in counts:
            step.predicate = counts[step.id]
            fixed[step.id] = step.predicate.describe()
            # A count set again replaces the one an earlier check appended.
            item = re.escape(step.predicate.name)
            stale = re.compile(rf" \(inventory {item} >= \d+\)")
            step.description = stale.sub("", step.description) + f" ({fixed[step.id]})"
            # The model's own "Collect 1 wood" would contradict the check, and a small coder
            # follows the words: it returns once it holds one.
            count = f"{step.predicate.at_least} {step.predicate.name}"
            step.description = re.sub(rf"\b\d+ {item}\b", count, step.description, count=1)
    return list(problems), fixed
