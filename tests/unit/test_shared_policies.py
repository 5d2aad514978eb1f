"""Trained policies in the shared library: published after a passed evaluation with the code
actions they call, adopted by a later run's step with the same check instead of training.

Real Crafter, a real (tiny) SB3 policy and the real critic rollouts; the chat model is
scripted.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlgpt.actions.library import ActionLibrary, SharedLibrary
from rlgpt.envs.base import Predicate
from rlgpt.graph.context import Context
from rlgpt.graph.schemas import Plan, SubAction
from rlgpt.graph.state import EvaluationRecord, State
from rlgpt.library_command import details
from rlgpt.nodes.shared_policies import adopt_policy, publish_policies
from rlgpt.tools.rl_job import RLJob
from rlgpt.tools.rl_pipeline import train_policy
from tests.fakes import ScriptedChatModel
from tests.helpers import GOOD_CODE, ONE_PASS, plan, run

WOOD = Predicate(kind="inventory", name="wood", at_least=1)
STEP = SubAction(id="wood_rl", description="get wood", predicate=WOOD, method="rl")


def _first_run(tmp_path: Path) -> tuple[State, Context]:
    """A run folder whose library holds get_wood and a policy over it, as run 1 leaves it."""
    run_dir = tmp_path / "run1"
    lib = ActionLibrary(run_dir / "library")
    lib.add_code("get_wood", GOOD_CODE, subaction="get_wood", predicate=WOOD)
    job = RLJob(
        task="crafter:score", predicate=WOOD, library_dir=str(lib.root),
        action_names=["get_wood"], episode_length=100, timesteps=128, n_steps=64,
        checkpoint_every=0, output_dir=str(tmp_path / "rl"), policy_name="wood_rl_policy",
    )  # fmt: skip
    result = train_policy(job)
    lib.add_policy(
        "wood_rl_policy", result.policy_path, predicate=WOOD, action_names=["get_wood"],
        subaction="wood_rl", description="get wood",
    )  # fmt: skip
    state = State(
        task="crafter:score",
        run_dir=str(run_dir),
        library={n: lib.record(n) for n in lib.names()},
    )
    ctx = Context(runs_dir=str(tmp_path), reuse_library=True)
    return state, ctx


def _ev(rate: float) -> EvaluationRecord:
    return EvaluationRecord(
        iteration=1, episodes=10, seeds=list(range(10)), task_success_rate=rate,
        subaction_success={"wood_rl": rate}, achievements={}, score=0.0, mean_length=1.0,
        failures=[],
    )  # fmt: skip


def test_a_passed_policy_is_published_with_the_code_it_calls(tmp_path: Path) -> None:
    state, ctx = _first_run(tmp_path)
    plan_ = Plan(sub_actions=[STEP])
    # Below the critic's bar: nothing is shared.
    assert publish_policies(state, ctx, plan_, _ev(0.5)) == []
    assert publish_policies(state, ctx, plan_, _ev(0.9)) == ["inventory_wood_1_policy"]
    shared = SharedLibrary(ctx.shared_library_dir())
    entry = shared.library.get("inventory_wood_1_policy")
    assert entry.kind == "policy" and entry.action_names == ["get_wood"]
    assert entry.bundle == {"get_wood": GOOD_CODE}
    assert entry.check == {"success_rate": 0.9, "episodes": 10}
    assert Path(entry.path).stat().st_size > 1000
    # A worse one does not replace it; `rlgpt library show` names what it calls.
    assert publish_policies(state, ctx, plan_, _ev(0.85)) == []
    shown = details(shared, "inventory_wood_1_policy")
    assert shown["kind"] == "policy" and "# --- get_wood" in shown["source"]
    # Found by its check and observation only.
    assert shared.find_policy(WOOD, "symbolic") is not None
    assert shared.find_policy(WOOD, "pixels") is None


def test_a_clashing_code_action_name_stops_the_adoption(tmp_path: Path) -> None:
    state, ctx = _first_run(tmp_path)
    publish_policies(state, ctx, Plan(sub_actions=[STEP]), _ev(1.0))
    other = State(task="crafter:score", run_dir=str(tmp_path / "run2"))
    other_code = "def run(api):\n    return 1\n"
    ActionLibrary(tmp_path / "run2" / "library").add_code("get_wood", other_code)
    assert adopt_policy(other, ctx, STEP, "wood_rl_policy") is None


def test_a_later_run_adopts_the_shared_policy_instead_of_training(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    state, ctx = _first_run(tmp_path)
    publish_policies(state, ctx, Plan(sub_actions=[STEP]), _ev(1.0))
    # Run 2: the planner's one step is `rl`; the coder is never asked for an RL set-up.
    scripted.answers = [plan(("wood_rl", "inventory", "wood", "rl"))]
    second, _ = run(
        "crafter:score", tmp_path, "t2", reuse_library=True, curriculum_rounds=0,
        final_policy="none", **ONE_PASS,
    )  # fmt: skip
    assert scripted.remaining == 0 and "coder" not in second.get("usage", {})
    assert second["rl_runs"] == [] and second["env_steps"].get("rl", 0) == 0
    record = second["library"]["wood_rl_policy"]
    assert record["kind"] == "policy" and "reused from the shared library" in record["origin"]
    assert second["library"]["get_wood"]["kind"] == "code"
    # The critic's evaluation ran the adopted policy, and counted as a check of it.
    assert list(second["evaluations"][0]["subaction_success"]) == ["wood_rl"]
    shared = SharedLibrary(tmp_path / "shared_library" / "crafter")
    reuse = shared.library.get("inventory_wood_1_policy").reuse
    assert reuse is not None and reuse.tried == 1
    rate = second["evaluations"][0]["subaction_success"]["wood_rl"]
    assert reuse.recent[0].success_rate == rate
    assert json.loads((Path(second["run_dir"]) / "metrics.json").read_text())
