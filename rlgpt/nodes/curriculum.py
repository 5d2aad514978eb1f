"""The automatic curriculum of an open-ended task (a score over many achievements).

Each planner call on such a task is one round: the steps the agent already carries out
reliably are kept, in their order, and the model adds the steps toward the next
`curriculum_targets` achievements, chosen from what the agent can do and what it tried
and missed (as Voyager's curriculum proposes the next task from the agent's progress).
The critic sends the run back for the next round when every step passes; the rounds, the
budget share kept for the final whole-game policy, or the loop budgets end it.
"""

from __future__ import annotations

from collections import Counter

from rlgpt.graph.context import Context
from rlgpt.graph.schemas import Plan, SubAction
from rlgpt.graph.state import CurriculumRound, EvaluationRecord, State
from rlgpt.nodes.common import env_steps_left, open_ended

#: Rounds an achievement may be a target and be missed before it is set aside: no later
#: round takes it as a target (a small model otherwise asks for the same one round after
#: round); the final whole-game policy may still learn it.
SET_ASIDE_AFTER = 3


def on_curriculum(state: State, ctx: Context) -> bool:
    """True when the planner works through the run's task in curriculum rounds."""
    return open_ended(state) and ctx.curriculum_rounds > 0


def last_evaluation(state: State) -> EvaluationRecord | None:
    """The critic's latest evaluation, if there was one."""
    evaluations = state.get("evaluations", [])
    return evaluations[-1] if evaluations else None


def kept_steps(plan: Plan | None, ev: EvaluationRecord | None, threshold: float) -> list[SubAction]:
    """The plan's leading steps that reached `threshold` in the evaluation (the first that
    missed it ends them: every later step starts from it)."""
    if plan is None or ev is None:
        return []
    kept = []
    for step in plan.sub_actions:
        if ev["subaction_success"].get(step.id, 0.0) < threshold:
            break
        kept.append(step)
    return kept


def mastered(ev: EvaluationRecord | None, threshold: float) -> dict[str, float]:
    """Achievements the evaluation unlocked in at least `threshold` of its episodes."""
    if ev is None:
        return {}
    return {name: rate for name, rate in ev["achievements"].items() if rate >= threshold}


def missed_targets(state: State, threshold: float) -> list[str]:
    """The previous round's target achievements that its evaluation did not master."""
    rounds = state.get("curriculum", [])
    if not rounds:
        return []
    done = mastered(last_evaluation(state), threshold)
    return [name for name in rounds[-1]["targets"] if name not in done]


def misses(state: State, now_missed: list[str]) -> Counter[str]:
    """How often each achievement was a round's target and missed, this time included."""
    counts: Counter[str] = Counter()
    for earlier in state.get("curriculum", []):
        counts.update(earlier["missed"])
    counts.update(now_missed)
    return counts


def set_aside(missed: Counter[str]) -> frozenset[str]:
    """The achievements missed `SET_ASIDE_AFTER` times or more."""
    return frozenset(n for n, k in missed.items() if k >= SET_ASIDE_AFTER)


def extend(kept: list[SubAction], added: Plan) -> tuple[Plan, list[str]]:
    """The kept steps followed by the round's new ones (a new step whose check a kept step
    already covers is dropped); returns the plan and the new steps' ids."""
    new = [
        step
        for step in added.sub_actions
        if not any(old.predicate.covers(step.predicate) for old in kept)
    ]
    # Copies: the rules' count checks change steps in place, and the kept ones must not.
    # The plan gives a new step whose id a kept one has a suffix.
    merged = Plan(
        rationale=added.rationale, sub_actions=[*(s.model_copy(deep=True) for s in kept), *new]
    )
    return merged, [s.id for s in merged.sub_actions[len(kept) :]]


def restored(kept: list[SubAction], plan: Plan) -> Plan:
    """The plan with fresh copies of the kept steps in their places (as they passed)."""
    original = {s.id: s for s in kept}
    steps = [original[s.id].model_copy(deep=True) if s.id in original else s
             for s in plan.sub_actions]  # fmt: skip
    return plan.model_copy(update={"sub_actions": steps})


def keep_checks(kept: list[SubAction], plan: Plan) -> Plan:
    """The plan with the kept steps as they were checked: where the rules raised a kept
    collecting step's count for the new steps, a new step collecting up to that count follows
    the kept ones instead (the kept step's action passed for its own count)."""
    original = {s.id: s for s in kept}
    head: list[SubAction] = []
    more: list[SubAction] = []
    rest: list[SubAction] = []
    for step in plan.sub_actions:
        old = original.get(step.id)
        if old is None:
            rest.append(step)
            continue
        head.append(old)
        if step.predicate != old.predicate:
            more.append(
                SubAction(
                    id=f"{step.id}_more",
                    description=f"{old.description} ({step.predicate.describe()})",
                    predicate=step.predicate,
                    method=step.method,
                    reason="The new steps use more than the kept step collects.",
                )
            )
    if not more:
        return plan
    steps = [s.model_dump() for s in [*head, *more, *rest]]
    return Plan.model_validate({"rationale": plan.rationale, "sub_actions": steps})


def first_targets(
    plan: Plan,
    kept: list[SubAction],
    done: dict[str, float],
    k: int,
    aside: frozenset[str] = frozenset(),
) -> Plan:
    """The plan cut after the new step that reaches its `k`-th new target achievement (an
    achievement not mastered yet): a round is that small, whatever the model planned. New
    steps toward an achievement set `aside` are dropped.

    The rules' order comes first (steps whose needs are met move ahead), so the cut keeps
    what the agent can reach next; the steps after it come back in a later round.
    """
    kept_ids = {s.id for s in kept}
    steps: list[SubAction] = []
    found = 0
    for step in plan.sub_actions:
        if found >= k:
            break
        is_new = step.id not in kept_ids
        achievement = step.predicate.name if step.predicate.kind == "achievement" else None
        if is_new and achievement in aside:
            continue
        steps.append(step)
        if is_new and achievement is not None and achievement not in done:
            found += 1
    if len(steps) == len(plan.sub_actions):
        return plan
    return plan.model_copy(update={"sub_actions": steps})


def targets(plan: Plan | None, added: list[str], done: dict[str, float]) -> list[str]:
    """The achievements the round's new steps check that the agent does not master yet."""
    if plan is None:
        return []
    return [
        s.predicate.name
        for s in plan.sub_actions
        if s.id in added and s.predicate.kind == "achievement" and s.predicate.name not in done
    ]


def progress_text(
    kept: list[SubAction],
    ev: EvaluationRecord | None,
    missed: Counter[str],
    achievements: list[str],
    threshold: float,
) -> str:
    """What the planner is told at the start of a round: what the agent masters, what it
    unlocks sometimes, what it tried and missed, and what remains."""
    rates = dict(ev["achievements"]) if ev is not None else {}
    done = mastered(ev, threshold)
    lines = []
    if kept:
        lines.append(
            "Steps the agent already carries out reliably (kept, in this order; your new steps "
            "run after them): "
            + "; ".join(
                f"{s.id} ({s.predicate.describe()}, {ev['subaction_success'][s.id]:.0%})"
                for s in kept
                if ev is not None
            )
        )
    else:
        lines.append("The agent cannot do anything reliably yet: start with the easiest thing.")
    if done:
        lines.append(
            "Achievements it unlocks reliably: "
            + ", ".join(f"{n} {r:.0%}" for n, r in done.items())
        )
    sometimes = {n: r for n, r in rates.items() if 0 < r < threshold}
    if sometimes:
        lines.append(
            "Unlocked sometimes: " + ", ".join(f"{n} {r:.0%}" for n, r in sometimes.items())
        )
    aside = set_aside(missed)
    retry = Counter({n: k for n, k in missed.items() if n not in aside})
    if retry:
        lines.append(
            "Tried as a round's target and missed: "
            + ", ".join(f"{n} ({k} time{'s' * (k > 1)})" for n, k in retry.most_common())
            + ". Choose another achievement, or the other method (code or rl) for it."
        )
    if aside:
        lines.append(
            f"Set aside after {SET_ASIDE_AFTER} misses, not a target any more: "
            + ", ".join(sorted(aside))
            + "."
        )
    remaining = [a for a in achievements if a not in done and a not in aside]
    lines.append("Not unlocked reliably yet: " + ", ".join(remaining))
    return "\n".join(lines)


def round_record(
    state: State,
    kept: list[SubAction],
    plan: Plan | None,
    added: list[str],
    missed: list[str],
    threshold: float,
) -> CurriculumRound:
    """The record of a finished planner round."""
    done = mastered(last_evaluation(state), threshold)
    return CurriculumRound(
        round=len(state.get("curriculum", [])) + 1,
        kept=[s.id for s in kept],
        added=added,
        targets=targets(plan, added, done),
        missed=missed,
        mastered=done,
    )


def rounds_left(state: State, ctx: Context) -> bool:
    """True while the curriculum may plan another round: rounds and its share of the
    env-step budget are left."""
    left = env_steps_left(state, ctx)
    return len(state.get("curriculum", [])) < ctx.curriculum_rounds and (left is None or left > 0)
