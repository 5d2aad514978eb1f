"""Trained policies in the library shared across runs: published once they pass the
critic's evaluation, adopted by a later run's step with the same check instead of training.

A policy's action space names this run's code actions, so the shared entry keeps their
sources (its bundle); a run that adopts it writes them into its own library under those
names. Only policies whose action space holds code actions alone are shared (a policy that
calls other policies would need them too).
"""

from __future__ import annotations

from rlgpt.actions.library import ActionLibrary, LibraryError, SharedLibrary
from rlgpt.graph.context import Context
from rlgpt.graph.schemas import Plan, SubAction
from rlgpt.graph.state import ActionRecord, EvaluationRecord, State
from rlgpt.logging import get_logger
from rlgpt.nodes.common import executor_of, library_dir

log = get_logger("shared_policies")


def publish_policies(state: State, ctx: Context, plan: Plan, ev: EvaluationRecord) -> list[str]:
    """Publish every policy of the plan that reached `success_threshold` in `ev`; returns
    the names stored (a shared one that did at least as well stays)."""
    library = state.get("library", {})
    lib = ActionLibrary(library_dir(state))
    shared = SharedLibrary(ctx.shared_library_dir(), ctx.env)
    stored = []
    for step in plan.sub_actions:
        name = executor_of(step, library)
        if step.method != "rl" or name is None:
            continue
        rate = ev["subaction_success"].get(step.id, 0.0)
        entry = lib.get(name)
        if entry.shared_from is not None:
            # An adopted policy: this evaluation is a later run's check of the shared one.
            shared_name, version = entry.shared_from
            passed = rate >= ctx.success_threshold
            shared.record_reuse(shared_name, version, rate, None, passed)
            continue
        if rate < ctx.success_threshold:
            continue
        calls = [lib.get(n) for n in entry.action_names]
        if any(c.kind != "code" for c in calls):
            log.info("policy_not_shared", policy=name, reason="it calls another policy")
            continue
        entry.check = {"success_rate": rate, "episodes": ev["episodes"]}
        bundle = {c.name: lib.source(c.name) for c in calls}
        if shared.publish_policy(entry, bundle):
            log.info("policy_published", policy=name, success_rate=rate)
            stored.append(SharedLibrary.policy_key(step.predicate))
    return stored


def adopt_policy(
    state: State, ctx: Context, step: SubAction, name: str
) -> dict[str, ActionRecord] | None:
    """The shared policy for `step`'s check, copied into the run's library as `name` with the
    code actions it calls (their records, by name); None when there is none, or its code
    actions' names are taken in this run by other code. The critic's evaluations count as
    the shared policy's checks."""
    shared = SharedLibrary(ctx.shared_library_dir(), ctx.env)
    entry = shared.find_policy(step.predicate, ctx.observation)
    if entry is None:
        return None
    lib = ActionLibrary(library_dir(state))
    for action, source in entry.bundle.items():
        if action in lib and (lib.get(action).kind != "code" or lib.source(action) != source):
            log.info("policy_not_adopted", policy=entry.name, clash=action)
            return None
    added: list[str] = []
    try:
        for action, source in entry.bundle.items():
            if action not in lib:
                lib.add_code(action, source, subaction=step.id,
                             description=f"called by the shared policy {entry.name}",
                             origin=f"with the shared policy {entry.name}")  # fmt: skip
                added.append(action)
        lib.add_policy(
            name,
            entry.path,
            predicate=step.predicate,
            action_names=entry.action_names,
            subaction=step.id,
            description=step.description,
            max_steps=ctx.subaction_max_steps,
            algo=entry.algo,
            observation=entry.observation,
            check=entry.check,
            origin=f"reused from the shared library (version {entry.version}; {entry.name})",
            shared_from=(entry.name, entry.version),
        )
    except LibraryError as exc:
        log.warning("policy_not_adopted", policy=entry.name, error=str(exc))
        return None
    log.info("policy_adopted", subaction=step.id, policy=entry.name, code_actions=added)
    return {n: lib.record(n) for n in [*added, name]}
