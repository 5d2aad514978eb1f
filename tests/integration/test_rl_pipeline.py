"""RL pipeline: a code action in the action space beats primitives alone; streaming; early stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.graph import START, StateGraph

from rlgpt.actions.library import ActionLibrary
from rlgpt.envs.base import EnvSettings, Predicate, resolve_task
from rlgpt.tools.evaluate import evaluate_plan
from rlgpt.tools.rl_pipeline import RLJob, rl_pipeline, train_policy
from tests.helpers import save_numbers

pytestmark = pytest.mark.integration

# The test author's own knowledge of Crafter: walk to a seen tree and hit it until wood rises.
COLLECT_ONE_WOOD = """
def available(api):
    return api.seen("tree")

def run(api):
    start = api.count("wood")
    if not api.move_to("tree"):
        api.explore(10)
        return False
    for _ in range(10):
        api.do()
        if api.count("wood") > start:
            return True
    return False
"""

BUDGET = 3_000


def _overall_success(curve_path: str) -> float:
    episodes = json.loads(Path(curve_path).read_text())
    totals = [e["env_steps"] for e in episodes]
    assert totals == sorted(totals) and all(e["length"] > 0 for e in episodes)
    return sum(e["success"] for e in episodes) / max(len(episodes), 1)


def test_code_action_beats_primitives_and_policy_is_reusable(tmp_path: Path) -> None:
    library = ActionLibrary(tmp_path / "library")
    library.add_code("collect_wood", COLLECT_ONE_WOOD, max_steps=60)
    common: dict[str, Any] = {
        "task": "crafter:place_table",
        "library_dir": str(library.root),
        "episode_length": 150,
        "timesteps": BUDGET,
        "n_steps": 64,
        "seed": 0,
        "progress_every": 1_000,
    }
    # Both arms run MaskablePPO (the code action's `available` asks for it); with primitives
    # alone every mask is all-true, so the two differ only in the action space.
    primitives = train_policy(
        RLJob(**common, algo="maskable_ppo", output_dir=str(tmp_path / "prim"), policy_name="prim")
    )
    events: list[dict[str, Any]] = []
    with_code = train_policy(
        RLJob(
            **common,
            action_names=["collect_wood"],
            output_dir=str(tmp_path / "code"),
            policy_name="table",
        ),
        on_progress=events.append,
    )
    prim_rate = _overall_success(primitives.curve_path)
    code_rate = _overall_success(with_code.curve_path)
    save_numbers(
        "rl_code_action_vs_primitives",
        {
            "task": "crafter:place_table",
            "budget_env_steps": BUDGET,
            "algo": with_code.algo,
            "primitives": {**primitives.model_dump(), "success_all_episodes": prim_rate},
            "with_code_action": {**with_code.model_dump(), "success_all_episodes": code_rate},
        },
    )
    # Primitives only: the compiled Crafter envs, masks from their `action_masks`.
    assert primitives.algo == "maskable_ppo" and primitives.vec_env == "batched"
    # `available` makes the code action maskable; code runs only in worker processes.
    assert with_code.algo == "maskable_ppo" and with_code.vec_env == "subproc"
    assert BUDGET <= primitives.env_steps < BUDGET + 10
    assert BUDGET <= with_code.env_steps < BUDGET + 100
    assert with_code.agent_steps < with_code.env_steps  # options take several env steps
    assert code_rate >= prim_rate + 0.3
    assert with_code.train_success_rate >= 0.5
    assert events and events[-1]["final"] and events[-1]["policy"] == "table"
    assert all(e["event"] == "rl_progress" for e in events)
    assert Path(with_code.policy_path).is_file()

    # The saved policy joins the library and runs as a policy action (it calls the code action).
    library.add_policy(
        "place_table_policy",
        with_code.policy_path,
        predicate=Predicate(kind="achievement", name="place_table"),
        action_names=with_code.action_names,
        max_steps=150,
    )
    result = evaluate_plan(
        resolve_task("crafter", "crafter:place_table"),
        [
            {
                "subaction": "place_table",
                "predicate": {"kind": "achievement", "name": "place_table"},
                "action": "place_table_policy",
            }
        ],
        library.root,
        seeds=[1000, 1001, 1002],
        max_steps_per_subaction=150,
        settings=EnvSettings(episode_length=300),
    )
    assert result["episodes"] == 3
    assert result["mean_length"] > 0
    assert result["task_success_rate"] == result["subaction_success"]["place_table"]
    assert result["task_success_rate"] >= 1 / 3
    assert result["achievements"]["collect_wood"] >= 1 / 3

    # A later RL job trains with that policy in its action space (a policy calling a code
    # action, called by a policy): one agent step runs the whole nested option.
    composed = train_policy(
        RLJob(
            **{**common, "timesteps": 1_000},
            action_names=["place_table_policy"],
            output_dir=str(tmp_path / "composed"),
            policy_name="composed",
        )
    )
    assert composed.action_names == ["place_table_policy"]
    assert composed.env_steps >= 1_000 and composed.agent_steps < composed.env_steps
    assert _overall_success(composed.curve_path) > 0


class _GraphState(TypedDict, total=False):
    job: dict[str, Any]
    result: dict[str, Any]


def _score_job(output_dir: Path, policy_name: str, predicate: Predicate, **settings: Any) -> RLJob:
    """A job on `crafter:score` toward `predicate`: 64-step rollouts, progress every 100 steps."""
    return RLJob(
        task="crafter:score",
        predicate=predicate,
        n_steps=64,
        progress_every=100,
        output_dir=str(output_dir),
        policy_name=policy_name,
        **settings,
    )


def test_tool_streams_progress_in_a_graph_and_stops_early(tmp_path: Path) -> None:
    library = ActionLibrary(tmp_path / "library")
    library.add_code(
        "collect_wood",
        COLLECT_ONE_WOOD,
        max_steps=60,
        predicate=Predicate(kind="inventory", name="wood", at_least=2),
    )

    def train(state: _GraphState) -> _GraphState:
        return {"result": rl_pipeline.invoke(state["job"])}

    graph = StateGraph(_GraphState).add_node("train", train).add_edge(START, "train").compile()
    # A sub-task that starts after an earlier plan step (the prelude collects two wood).
    job = _score_job(
        tmp_path / "tool",
        "table_after_wood",
        Predicate(kind="achievement", name="place_table"),
        episode_length=60,
        timesteps=400,
        shaping=[("sapling", 0.1)],
        library_dir=str(library.root),
        prelude=["collect_wood"],
    )
    events: list[Any] = []
    final: dict[str, Any] = {}
    for mode, chunk in graph.stream(
        {"job": job.model_dump(mode="json")}, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            events.append(chunk)
        elif isinstance(chunk, dict):
            final = chunk
    assert len(events) >= 3
    assert [e["env_steps"] for e in events] == sorted(e["env_steps"] for e in events)
    # The prelude's steps count toward the budget too.
    last = events[-1]
    assert last["final"] is True and last["prelude_env_steps"] > 0
    assert last["env_steps"] + last["prelude_env_steps"] >= 400
    assert {"policy", "env_steps", "agent_steps", "budget", "episodes", "success_rate"} <= set(
        events[0]
    )
    result = final["result"]
    assert result["env_steps"] + result["prelude_env_steps"] >= 400
    assert Path(result["policy_path"]).is_file()
    assert result["vec_env"] == "subproc" and result["prelude_env_steps"] > 0
    assert result["episodes"] > 0 and result["train_success_rate"] > 0

    # Outside a graph the tool runs without a stream writer.
    wood = Predicate(kind="inventory", name="wood")
    plain = _score_job(tmp_path / "plain", "wood", wood, episode_length=50, timesteps=200)
    assert rl_pipeline.invoke(plain.model_dump(mode="json"))["env_steps"] == 200

    # should_stop ends training early; the policy is still saved.
    seen: list[dict[str, Any]] = []
    stopped = train_policy(
        plain.model_copy(update={"timesteps": 100_000, "policy_name": "stopped"}),
        on_progress=seen.append,
        should_stop=lambda: len(seen) >= 1,
    )
    assert stopped.stopped_early
    assert stopped.env_steps < 1_000
    assert Path(stopped.policy_path).is_file()
    assert seen[-1]["final"] is True
