"""The curriculum of an open-ended task and its final whole-game agent, on real Crafter.

The planner is the scripted chat model; the code actions, checks, evaluations and the
final policy's training are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlgpt.envs.base import Predicate
from rlgpt.envs.crafter.adapter import CrafterAdapter
from rlgpt.graph.schemas import Plan, SubAction
from rlgpt.graph.state import EvaluationRecord, State
from rlgpt.nodes.curriculum import extend, first_targets, keep_checks, kept_steps, progress_text
from rlgpt.nodes.planner import RoundStart
from rlgpt.nodes.prompts import planner_schema
from tests.fakes import ScriptedChatModel
from tests.helpers import GOOD_CODE, SCRIPTED_SETTINGS, code, plan, run

#: Collects 2 wood (the kept step collects 1).
TWO_WOOD = GOOD_CODE.replace('count("wood") < 1', 'count("wood") < 2')
TABLE_CODE = """def run(api):
    while api.count("wood") < 2:
        api.move_to("tree")
        api.do()
    return api.place("table")
"""
#: One pass per round, judged by the rules; a step passes at 2 of the 3 evaluation episodes.
CURRICULUM = {
    "critic": "rules",
    "max_inner_loops": 0,
    "final_policy": "none",
    "success_threshold": 0.6,
}


def _step(sid: str, kind: str, name: str, at_least: int = 1) -> SubAction:
    pred = Predicate(kind=kind, name=name, at_least=at_least)  # type: ignore[arg-type]
    return SubAction(id=sid, description=f"get {name}", predicate=pred, method="code")


def _ev(success: dict[str, float], achievements: dict[str, float]) -> EvaluationRecord:
    return EvaluationRecord(
        iteration=1, episodes=10, seeds=list(range(10)), task_success_rate=0.0,
        subaction_success=success, achievements=achievements, score=0.0, mean_length=10.0,
        failures=[],
    )  # fmt: skip


def test_rounds_keep_what_passed_and_add_the_next_achievement(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [
        plan(("get_wood", "inventory", "wood", "code")),
        code(GOOD_CODE),
        plan(("table", "achievement", "place_table", "code")),
        code(TWO_WOOD),  # get_wood_more: a table uses 2 wood, the kept step collects 1
        code(TABLE_CODE),
    ]
    state, order = run("crafter:score", tmp_path, curriculum_rounds=2, **CURRICULUM)
    assert order == [
        "start", "planner", "review_plan", "coder", "rl_trainer", "critic",
        "planner", "review_plan", "coder", "rl_trainer", "critic", "final_policy", "report",
    ]  # fmt: skip
    first, second = state["curriculum"]
    assert (first["round"], first["kept"], first["added"]) == (1, [], ["get_wood"])
    assert second["kept"] == ["get_wood"] and second["added"] == ["get_wood_more", "table"]
    assert second["targets"] == ["place_table"]
    # The second round's prompt tells the model what the agent already does.
    prompt = str(scripted.prompts[2][-1].content)
    assert "round 2" in prompt and "get_wood (inventory wood >= 1, " in prompt
    # The passed round sent the run back to the planner without using an outer loop.
    assert state["verdicts"][0]["source"] == "curriculum"
    assert state["outer_loops"] == 0
    # Only the new step was coded in round 2: get_wood kept its first version.
    assert state["library"]["get_wood"]["version"] == 1
    last = state["evaluations"][-1]
    assert list(last["subaction_success"]) == ["get_wood", "get_wood_more", "table"]
    assert state["plan"]["sub_actions"][1]["predicate"]["at_least"] == 2
    assert last["achievements"]["place_table"] >= 2 / 3
    assert state["verdicts"][-1]["route"] == "end"
    assert "final_policy" not in state  # final_policy = none
    report = Path(state["report_path"]).read_text()
    assert "## Curriculum" in report and "| 2 | place_table | get_wood_more, table | 1 |" in report
    assert scripted.remaining == 0


def test_a_missed_target_is_named_in_the_next_round(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    broken = "def run(api):\n    return False\n"
    scripted.answers = [
        plan(("table", "achievement", "place_table", "code")),
        code(broken),
        plan(("get_wood", "inventory", "wood", "code")),
        code(GOOD_CODE),
    ]
    state, _ = run("crafter:score", tmp_path, curriculum_rounds=2, **CURRICULUM)
    first, second = state["curriculum"]
    assert first["targets"] == ["place_table"]
    assert second["missed"] == ["place_table"]
    prompt = str(scripted.prompts[2][-1].content)
    assert "Tried as a round's target and missed: place_table (1 time)" in prompt
    # The failed step was not kept; the weak first round's failure was no curriculum pass.
    assert state["verdicts"][0]["source"] == "rules"


def test_final_policy_trains_on_the_whole_game_with_what_the_loop_left(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [plan(("get_wood", "inventory", "wood", "code")), code(GOOD_CODE)]
    budget = 6_000
    state, order = run(
        "crafter:score",
        tmp_path,
        curriculum_rounds=1,
        critic="rules",
        max_inner_loops=0,
        env_step_budget=budget,
        final_policy_share=0.5,
        final_episode_length=200,
        rl_n_steps=64,
        rl_n_envs=2,
        rl_checkpoint_every=0,
    )
    assert order[-2:] == ["final_policy", "report"]
    final = state["final_policy"]
    loop_steps = state["env_steps"]["code_check"] + state["env_steps"]["evaluation"]
    # The final policy got everything the loop left, and the run kept to its budget (the
    # last code-action call may end past it).
    assert final["env_steps"] == state["env_steps"]["final_policy"] >= budget - loop_steps
    assert sum(state["env_steps"].values()) <= budget + 250
    assert final["mode"] == "rl" and final["action_names"] == ["get_wood"]
    assert final["episodes"] == len(final["episode_results"]) > 0
    assert all(e["length"] <= 200 for e in final["episode_results"])
    run_record = state["rl_runs"][-1]
    assert run_record["subaction"] == "final_policy"
    assert Path(run_record["policy_path"]).exists()
    curve = json.loads(Path(final["curve_path"]).read_text())
    assert len(curve) == final["episodes"]
    assert "## Final whole-game agent" in Path(state["report_path"]).read_text()
    # The final agent's rates are those of its episodes.
    wood = sum("collect_wood" in e["achievements"] for e in final["episode_results"])
    assert final["achievements"]["collect_wood"] == wood / final["episodes"]


def test_code_only_agent_plays_whole_episodes_with_its_plan(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [plan(("get_wood", "inventory", "wood", "rl")), code(GOOD_CODE)]
    state, _ = run(
        "crafter:score",
        tmp_path,
        curriculum_rounds=1,
        critic="rules",
        max_inner_loops=0,
        allow_rl=False,
        final_policy="code",
        env_step_budget=1_500,
        final_episode_length=300,
    )
    # allow_rl = false: the planner's rl step became a code step, and no RL ran.
    assert state["plan"]["sub_actions"][0]["method"] == "code"
    assert state["env_steps"].get("rl", 0) == 0 and not state.get("rl_runs")
    final = state["final_policy"]
    assert final["mode"] == "code" and final["action_names"] == ["get_wood"]
    episodes = final["episode_results"]
    assert episodes and all(e["length"] <= 300 for e in episodes)
    assert final["achievements"]["collect_wood"] >= 0.5
    assert sum(state["env_steps"].values()) <= 1_500 + 250
    # The schema given to the planner allows code steps only.
    schema = planner_schema(CrafterAdapter().vocabulary(), allow_rl=False)
    assert schema["$defs"]["SubAction"]["properties"]["method"]["enum"] == ["code"]
    assert "learns nothing by RL" in str(scripted.prompts[0][-1].content)


def test_kept_steps_stop_at_the_first_weak_one() -> None:
    steps = [_step("a", "inventory", "wood"), _step("b", "achievement", "place_table"),
             _step("c", "achievement", "make_wood_pickaxe")]  # fmt: skip
    ev = _ev({"a": 1.0, "b": 0.5, "c": 1.0}, {"place_table": 0.5})
    assert [s.id for s in kept_steps(Plan(sub_actions=steps), ev, 0.8)] == ["a"]
    assert kept_steps(None, ev, 0.8) == [] and kept_steps(Plan(sub_actions=steps), None, 0.8) == []


def test_extend_drops_covered_steps_and_renames_clashes() -> None:
    kept = [_step("wood", "inventory", "wood", 2)]
    added = Plan(sub_actions=[_step("wood", "inventory", "wood", 1),
                              _step("wood", "achievement", "place_table")])  # fmt: skip
    merged, new = extend(kept, added)
    assert [s.id for s in merged.sub_actions] == ["wood", "wood_2"]
    assert new == ["wood_2"]
    # The kept step is a copy: changing the plan leaves it as it was.
    merged.sub_actions[0].predicate.at_least = 5
    assert kept[0].predicate.at_least == 2


def test_a_raised_count_of_a_kept_step_becomes_a_new_step() -> None:
    kept = [_step("wood", "inventory", "wood", 1)]
    raised = Plan(sub_actions=[_step("wood", "inventory", "wood", 3),
                               _step("table", "achievement", "place_table")])  # fmt: skip
    fixed = keep_checks(kept, raised)
    assert [(s.id, s.predicate.at_least) for s in fixed.sub_actions] == [
        ("wood", 1), ("wood_more", 3), ("table", 1),
    ]  # fmt: skip
    assert keep_checks(kept, Plan(sub_actions=list(kept))).sub_actions == kept


def test_progress_text_names_rates_misses_and_what_remains() -> None:
    from collections import Counter

    kept = [_step("a", "inventory", "wood")]
    ev = _ev({"a": 0.9}, {"collect_wood": 0.9, "place_table": 0.3, "wake_up": 0.0})
    text = progress_text(kept, ev, Counter({"place_table": 2}), ["collect_wood", "place_table",
                         "wake_up"], 0.8)  # fmt: skip
    assert "a (inventory wood >= 1, 90%)" in text
    assert "Achievements it unlocks reliably: collect_wood 90%" in text
    assert "Unlocked sometimes: place_table 30%" in text
    assert "place_table (2 times)" in text
    assert text.endswith("Not unlocked reliably yet: place_table, wake_up")
    first = progress_text([], None, Counter(), ["collect_wood"], 0.8)
    assert "cannot do anything reliably yet" in first


def test_round_start_reads_the_last_evaluation() -> None:
    from rlgpt.graph.context import Context

    plan_ = Plan(sub_actions=[_step("a", "inventory", "wood"),
                              _step("b", "achievement", "place_table")])  # fmt: skip
    state = State(
        task="crafter:score",
        plan=plan_.model_dump(),
        evaluations=[_ev({"a": 1.0, "b": 0.0}, {"collect_wood": 1.0})],
        curriculum=[{"round": 1, "kept": [], "added": ["a", "b"], "targets": ["place_table"],
                     "missed": [], "mastered": {}}],
    )  # fmt: skip
    start = RoundStart.of(state, Context(), CrafterAdapter())
    assert [s.id for s in start.kept] == ["a"] and start.missed == ["place_table"]
    assert "This is round 2" in start.text


def test_learning_suite_method_c_is_the_models_code_only_agent(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    from rlgpt.bench.learning import run_learning
    from rlgpt.bench.learning_config import LearningConfig
    from rlgpt.bench.learning_report import write_learning

    scripted.answers = [plan(("get_wood", "inventory", "wood", "code")), code(GOOD_CODE)]
    config = LearningConfig(
        budget=2_000,
        seeds=[1],
        methods=["c"],
        episode_length=300,
        graph_context={
            **SCRIPTED_SETTINGS,
            **CURRICULUM,
            "curriculum_rounds": 1,
            "eval_episodes": 3,
            "code_check_episodes": 2,
        },
    )
    result = run_learning(config, tmp_path / "runs")
    (method,) = result["methods"]
    (run,) = method["runs"]
    assert "code-only agent" in method["label"] and method["observation"].startswith("none")
    paths = write_learning({**result, "wall_time": 1.0}, tmp_path / "out", "c")
    table = paths["markdown"].read_text()
    assert "## The graph's runs (c, d)" in table
    assert "curriculum rounds (targets): 1: (no new target)" in table
    assert "model: 2 calls" in table
    parts = run["env_steps_by_part"]
    assert parts["final_policy"] > 0 and parts.get("rl", 0) == 0
    assert run["env_steps"] == sum(parts.values()) <= 2_000 + 250
    # The rates are those of the final agent's whole episodes, not the evaluation's.
    assert "final whole-game agent (plan's code actions" in run["note"]
    assert run["episodes"] == len(run["episode_results"]) > 3
    assert run["achievements"]["collect_wood"] > 0
    assert run["final_actions"] == ["get_wood"]
    assert run["curriculum"][0]["added"] == ["get_wood"]
    assert run["context"]["allow_rl"] is False and run["usage"]["planner"]["calls"] == 1


def test_a_round_is_cut_after_its_new_targets() -> None:
    steps = [
        _step("wood", "inventory", "wood", 3),
        _step("table", "achievement", "place_table"),
        _step("pickaxe", "achievement", "make_wood_pickaxe"),
        _step("coal", "achievement", "collect_coal"),
    ]
    whole = Plan(sub_actions=steps)
    cut = first_targets(whole, [], {}, 2)
    assert [s.id for s in cut.sub_actions] == ["wood", "table", "pickaxe"]
    # A mastered achievement is no new target; a kept step never counts.
    assert len(first_targets(whole, [], {"place_table": 1.0}, 2).sub_actions) == 4
    assert [s.id for s in first_targets(whole, steps[:2], {}, 1).sub_actions] == [
        "wood", "table", "pickaxe",
    ]  # fmt: skip


def test_a_target_missed_too_often_is_set_aside() -> None:
    from collections import Counter

    from rlgpt.nodes.curriculum import SET_ASIDE_AFTER, set_aside

    steps = [
        _step("wood", "inventory", "wood", 3),
        _step("table", "achievement", "place_table"),
        _step("pickaxe", "achievement", "make_wood_pickaxe"),
        _step("sword", "achievement", "make_wood_sword"),
    ]
    whole = Plan(sub_actions=steps)
    aside = set_aside(Counter({"make_wood_pickaxe": SET_ASIDE_AFTER, "place_table": 1}))
    assert aside == {"make_wood_pickaxe"}
    # Its new step is dropped and the next achievement takes its place as a target.
    cut = first_targets(whole, [], {}, 2, aside)
    assert [s.id for s in cut.sub_actions] == ["wood", "table", "sword"]
    # A kept step toward it stays: it passed.
    assert [s.id for s in first_targets(whole, steps[:3], {}, 1, aside).sub_actions] == [
        "wood", "table", "pickaxe", "sword",
    ]  # fmt: skip
    ev = _ev({}, {"place_table": 0.3})
    missed = Counter({"make_wood_pickaxe": SET_ASIDE_AFTER, "place_table": 1})
    text = progress_text([], ev, missed, ["place_table", "make_wood_pickaxe", "wake_up"], 0.8)
    assert "Tried as a round's target and missed: place_table (1 time)." in text
    assert f"Set aside after {SET_ASIDE_AFTER} misses, not a target any more: " in text
    assert text.endswith("Not unlocked reliably yet: place_table, wake_up")


def test_method_d_sits_in_the_table_of_its_final_policys_observation() -> None:
    from rlgpt.bench.learning import observation_of
    from rlgpt.bench.learning_config import LearningConfig

    assert observation_of(LearningConfig(methods=["d"]), "d") == "symbolic"
    pixels = LearningConfig(methods=["d"], graph_context={"observation": "pixels"})
    assert observation_of(pixels, "d") == "pixels"
    # Without a final policy its rates come from evaluations: a table of its own.
    none = LearningConfig(methods=["d"], graph_context={"final_policy": "none"})
    assert observation_of(none, "d").startswith("skill API")
    assert observation_of(LearningConfig(methods=["c"]), "c").startswith("none")


def test_the_run_panel_shows_the_code_only_agents_episodes() -> None:
    from rich.console import Console

    from rlgpt.run_display import RunDisplay

    console = Console(record=True, width=140)
    display = RunDisplay(console, live=False)
    display.handle("tasks", {"name": "final_policy", "input": {}})
    event = {"event": "play_progress", "episodes": 12, "env_steps": 3_400, "budget": 10_000}
    display.handle("custom", event)
    console.print(display)
    text = console.export_text()
    assert "final_policy" in text
    assert "final agent (code actions) 3,400/10,000 env steps · 12 episodes" in text


def test_an_rl_step_may_call_a_policy_trained_for_another_step(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    from rlgpt.graph.state import ActionRecord
    from rlgpt.nodes.coder import LLMCoder
    from tests.helpers import scripted_context

    library = {
        "get_wood": ActionRecord(name="get_wood", kind="code", path="x", subaction="get_wood",
                                 description="", version=1),
        "wood_rl_policy": ActionRecord(name="wood_rl_policy", kind="policy", path="y",
                                       subaction="wood_rl", description="", version=1),
        "table_policy": ActionRecord(name="table_policy", kind="policy", path="z",
                                     subaction="table", description="", version=1),
    }  # fmt: skip
    step = _step("table", "achievement", "place_table").model_copy(update={"method": "rl"})
    scripted.answers = [json.dumps({"code_actions": ["wood_rl_policy", "get_wood"]})]
    ctx = scripted_context(tmp_path)
    setup, _, errors = LLMCoder()._write_setup(step, library, State(task="t"), ctx)
    assert setup is not None and setup.code_actions == ["wood_rl_policy", "get_wood"]
    assert errors == []
    # Offered: every other action of the library, not the step's own policy.
    prompt = str(scripted.prompts[0][-1].content)
    assert "Library: get_wood, wood_rl_policy" in prompt


def test_a_step_that_holds_at_the_start_is_dropped() -> None:
    from rlgpt.nodes.planner import without_done_at_start

    steps = [_step("explore", "inventory", "food", 3), _step("wood", "inventory", "wood"),
             _step("drink", "inventory", "drink", 9)]  # fmt: skip
    kept = without_done_at_start(Plan(sub_actions=steps), CrafterAdapter())
    assert [s.id for s in kept.sub_actions] == ["wood"]
    # Nothing else left: the plan stays as the model wrote it (the rules report it).
    alone = Plan(sub_actions=steps[:1])
    assert without_done_at_start(alone, CrafterAdapter()) == alone
    assert CrafterAdapter().initial_inventory()["food"] == 9


def test_a_failed_final_agent_fails_the_run_and_the_same_command_runs_it_again(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    from rlgpt.bench.learning import RunsFailed, run_learning
    from rlgpt.bench.learning_config import LearningConfig

    scripted.answers = [plan(("get_wood", "inventory", "wood", "code")), code(GOOD_CODE)]
    context = {**SCRIPTED_SETTINGS, **CURRICULUM, "curriculum_rounds": 1, "eval_episodes": 3,
               "code_check_episodes": 2, "final_policy": "rl", "rl_n_steps": 64,
               "rl_checkpoint_every": 0}  # fmt: skip
    # A stop asked at once: the final job never starts (the loop's nodes do not poll it).
    config = LearningConfig(
        budget=3_000, seeds=[0], methods=["d"], episode_length=200,
        graph_context={**context, "node_timeout": 0.001},
    )  # fmt: skip
    with pytest.raises(RunsFailed, match="the final agent did not finish"):
        run_learning(config, tmp_path / "runs")
    assert not (tmp_path / "runs" / "d_seed0" / "summary.json").exists()
    # Again without the stop: only the final node runs (no model call), and the rates are
    # those of its episodes.
    config.graph_context = context
    (method,) = run_learning(config, tmp_path / "runs")["methods"]
    (run,) = method["runs"]
    assert scripted.remaining == 0
    assert run["env_steps_by_part"]["final_policy"] > 0
    assert "final whole-game agent (RL policy" in run["note"]
    assert run["final_actions"] == ["get_wood"]
    # Its wall time covers both attempts: the failed one left its time in the clock's file.
    first, second = json.loads((tmp_path / "runs" / "d_seed0" / "attempt_seconds.json").read_text())
    assert run["resumes"] == 1 and run["wall_time_complete"]
    assert run["wall_time"] >= first["seconds"] + second["seconds"] - 0.2


def test_a_planner_that_never_answers_usably_ends_after_the_rounds(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = ["not a plan"] * 12
    state, order = run("crafter:score", tmp_path, curriculum_rounds=2, **CURRICULUM)
    assert order.count("planner") == 2 and order[-1] == "report"
    assert [r["added"] for r in state["curriculum"]] == [[], []]
    assert state["verdicts"][-1]["route"] == "end"
    assert any(e["node"] == "planner" for e in state["errors"])
