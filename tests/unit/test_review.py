"""Human in the loop: plan review (approve, edit, reject) and RL budget approval."""

from __future__ import annotations

import json
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from rlgpt.graph.builder import builder
from rlgpt.graph.context import Context
from tests.fakes import ScriptedChatModel
from tests.helpers import GOOD_CODE, ONE_PASS, advance, code, plan, scripted_context


def _context(tmp_path: Any, **settings: Any) -> Context:
    return scripted_context(
        tmp_path,
        eval_episodes=2,
        code_check_episodes=1,
        subaction_max_steps=200,
        gif=False,
        **ONE_PASS,
        **settings,
    )


def _advance(graph: Any, inputs: Any, config: Any, ctx: Context) -> Any:
    snapshot, _ = advance(graph, inputs, config, ctx)
    return snapshot


def test_plan_rejected_then_edited(scripted: ScriptedChatModel, tmp_path: Any) -> None:
    scripted.answers = [
        plan(("get_diamond", "achievement", "collect_diamond", "code")),
        plan(("get_stone", "achievement", "collect_stone", "code")),
        code(GOOD_CODE),
    ]
    ctx = _context(tmp_path, approve_plan=True)
    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "review"}}
    snap = _advance(graph, {"task": "crafter:collect_wood"}, config, ctx)
    (pending,) = snap.interrupts
    assert pending.value["kind"] == "approve_plan"
    assert pending.value["plan"]["sub_actions"][0]["id"] == "get_diamond"

    snap = _advance(
        graph, Command(resume={"action": "reject", "feedback": "too hard"}), config, ctx
    )
    assert "A reviewer rejected the plan: too hard" in str(scripted.prompts[1][-1].content)
    assert snap.interrupts[0].value["plan"]["sub_actions"][0]["id"] == "get_stone"

    snap = _advance(graph, Command(resume={"action": "edit"}), config, ctx)  # no plan: asked again
    assert snap.interrupts[0].value["error"] == "action=edit needs a plan"

    edited = json.loads(plan(("chop", "inventory", "collect_wood", "code")))
    snap = _advance(graph, Command(resume={"action": "edit", "plan": edited}), config, ctx)
    assert not snap.interrupts
    state = snap.values
    # The reviewer's plan is used, its predicate kind corrected from its name.
    assert state["plan"]["sub_actions"][0]["id"] == "chop"
    assert state["plan"]["sub_actions"][0]["predicate"]["kind"] == "achievement"
    assert list(state["library"]) == ["chop"]
    assert scripted.remaining == 0


def test_rl_budget_approval(scripted: ScriptedChatModel, tmp_path: Any) -> None:
    scripted.answers = [
        plan(("wood", "achievement", "collect_wood", "rl")),
        json.dumps({"code_actions": [], "episode_length": 50}),
    ]
    ctx = _context(tmp_path, approve_rl=True, rl_n_steps=64)
    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "rl"}}
    snap = _advance(graph, {"task": "crafter:collect_wood"}, config, ctx)
    (pending,) = snap.interrupts
    assert pending.value["kind"] == "approve_rl"
    assert pending.value["jobs"][0]["subaction"] == "wood"
    assert pending.value["jobs"][0]["timesteps"] == ctx.rl_timesteps

    snap = _advance(graph, Command(resume={"action": "approve", "timesteps": 128}), config, ctx)
    assert not snap.interrupts
    (run,) = snap.values["rl_runs"]
    assert 128 <= run["env_steps"] < 1000
    assert snap.values["library"]["wood_policy"]["kind"] == "policy"
