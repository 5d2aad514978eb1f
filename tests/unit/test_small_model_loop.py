"""What makes a small model's answers count: the planner revises a plan the rules find
lacking, the coder repairs code with the check's failure trace, and code that passed its
checks is reused by later runs without a model call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlgpt.actions.library import SharedLibrary
from rlgpt.envs.base import Predicate
from rlgpt.envs.crafter.manual import plan_problems
from rlgpt.graph.schemas import SubAction
from tests.fakes import ScriptedChatModel
from tests.helpers import GOOD_CODE, ONE_PASS, code, plan, run

# Passes the static check, takes one step and claims success without any wood.
CLAIMS_TOO_EARLY = """def run(api):
    api.noop()
    return True
"""


def _achievement(name: str) -> Predicate:
    return Predicate(kind="achievement", name=name)


def test_rules_find_what_a_plan_lacks() -> None:
    wood = Predicate(kind="inventory", name="wood", at_least=1)
    steps = [
        ("w", wood),
        ("t", _achievement("place_table")),
        ("p", _achievement("make_wood_pickaxe")),
    ]
    # Too few wood for what the later steps use: no problem to send back, a check to raise.
    assert plan_problems(steps) == ([], {"w": Predicate(kind="inventory", name="wood", at_least=3)})
    steps[0] = ("w", _achievement("collect_wood"))
    assert plan_problems(steps)[1] == {"w": Predicate(kind="inventory", name="wood", at_least=3)}
    steps[0] = ("w", Predicate(kind="inventory", name="wood", at_least=3))
    assert plan_problems(steps) == ([], {})
    # The same item collected again by a later step: the short step keeps its own count.
    again = [("w", wood), ("t", _achievement("place_table")), ("w2", wood), ("p", steps[2][1])]
    assert plan_problems(again) == ([], {"w": Predicate(kind="inventory", name="wood", at_least=2)})
    stone, _ = plan_problems([("s", _achievement("collect_stone"))])
    assert stone == [
        "s: collecting stone needs 1 wood_pickaxe in the inventory, which no earlier step "
        "provides (make_wood_pickaxe)"
    ]
    alone, _ = plan_problems([("t", _achievement("place_table"))])
    assert alone == [
        "t: placing table uses 2 wood, but no step before it gets wood; add one that does "
        "(collect_wood, inventory wood >= 2)"
    ]
    # A step that comes too late is named, to be moved.
    late, _ = plan_problems(
        [
            ("w", Predicate(kind="inventory", name="wood", at_least=3)),
            ("p", _achievement("make_wood_pickaxe")),
            ("t", _achievement("place_table")),
        ]
    )
    assert late == [
        "p: making wood_pickaxe needs table nearby; place it in an earlier step "
        "(the later step t, if it comes before p)"
    ]
    sword, _ = plan_problems([("p", _achievement("make_wood_sword"))])
    assert "needs table nearby; place it in an earlier step (place_table)" in sword[0]


def test_rules_lower_a_count_the_inventory_cannot_hold() -> None:
    # crafter's inventory holds 9 of anything: a check of 10 wood never holds.
    nine = Predicate(kind="inventory", name="wood", at_least=9)
    hundred = [("w", Predicate(kind="inventory", name="wood", at_least=10))]
    assert plan_problems(hundred) == ([], {"w": nine})
    # A count raised for what later steps use stops at the cap too.
    steps = [("w", Predicate(kind="inventory", name="wood", at_least=1))]
    steps += [(f"t{i}", _achievement("place_table")) for i in range(5)]
    assert plan_problems(steps)[1] == {"w": nine}


def test_a_set_count_is_written_into_the_steps_words() -> None:
    from rlgpt.envs.base import load_adapter
    from rlgpt.graph.schemas import Plan
    from rlgpt.nodes.planner import rule_problems

    answer = json.loads(
        plan(
            ("collect_wood", "inventory", "wood", "code"),
            ("t", "achievement", "place_table", "code"),
        )
    )
    answer["sub_actions"][0]["description"] = "Collect 1 wood: tree."
    steps = Plan.model_validate(answer)
    _, fixed = rule_problems(load_adapter("crafter"), steps)
    assert fixed == {"collect_wood": "inventory wood >= 2"}
    assert steps.sub_actions[0].description == "Collect 2 wood: tree. (inventory wood >= 2)"


def test_planner_revises_a_plan_the_rules_find_lacking(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [
        plan(("table", "achievement", "place_table", "code")),
        plan(("pick", "achievement", "make_wood_pickaxe", "code")),
        code(GOOD_CODE),
    ]
    state, _ = run("crafter:place_table", tmp_path, plan_revisions=1, **ONE_PASS)
    revision = str(scripted.prompts[1][-1].content)
    assert "placing table uses 2 wood, but no step before it gets wood" in revision
    assert "- collect_wood: face tree and do" in revision  # the manual line that helps
    # Revisions ran out: the plan with fewest problems goes ahead, its gap on record.
    assert [s["id"] for s in state["plan"]["sub_actions"]] == ["table"]
    lacks = [e for e in state["errors"] if e["kind"] == "plan_lacks"]
    assert len(lacks) == 1 and "placing table uses 2 wood" in lacks[0]["message"]
    assert state["usage"]["planner"]["calls"] == 2
    assert scripted.remaining == 0


def test_planner_moves_a_step_the_rules_need_earlier() -> None:
    from rlgpt.envs.base import load_adapter
    from rlgpt.graph.schemas import Plan
    from rlgpt.nodes.planner import reorder_by_rules, rule_problems

    steps = [("wood", "inventory", "wood"), ("pick", "achievement", "make_wood_pickaxe")]
    steps += [("table", "achievement", "place_table"), ("stone", "inventory", "stone")]
    wrong = Plan.model_validate(json.loads(plan(*[(*s, "code") for s in steps])))
    # A revised plan often repeats the count an earlier check appended to a description.
    wrong.sub_actions[0].description += " (inventory wood >= 2)"
    adapter = load_adapter("crafter")
    problems, _ = rule_problems(adapter, wrong)
    assert problems and "(the later step table, if it comes before pick)" in problems[0]
    fixed, left = reorder_by_rules(adapter, wrong, problems)
    assert left == []
    assert [s.id for s in fixed.sub_actions] == ["wood", "table", "pick", "stone"]
    # The counts follow the new order: enough wood for the table and the pickaxe, and the
    # description names the last count only.
    assert fixed.sub_actions[0].predicate.at_least == 3
    assert fixed.sub_actions[0].description.count("(inventory wood >=") == 1
    assert fixed.sub_actions[0].description.endswith("(inventory wood >= 3)")
    # A plan the rules cannot fix by moving steps keeps its order and its problems.
    alone = Plan.model_validate(json.loads(plan(("table", "achievement", "place_table", "code"))))
    gap, _ = rule_problems(adapter, alone)
    assert reorder_by_rules(adapter, alone, gap) == (alone, gap)


def test_planner_reorders_before_asking_again(scripted: ScriptedChatModel, tmp_path: Path) -> None:
    scripted.answers = [
        plan(
            ("wood", "inventory", "wood", "code"),
            ("pick", "achievement", "make_wood_pickaxe", "code"),
            ("table", "achievement", "place_table", "code"),
        ),
        code(GOOD_CODE),
        code(GOOD_CODE),
        code(GOOD_CODE),
    ]
    state, _ = run("crafter:make_wood_pickaxe", tmp_path, plan_revisions=2, **ONE_PASS)
    # The order the rules can fix costs no second planner call.
    assert state["usage"]["planner"]["calls"] == 1
    assert [s["id"] for s in state["plan"]["sub_actions"]] == ["wood", "table", "pick"]


def test_planner_adds_the_goal_step_a_plan_dropped(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    no_goal = plan(("wood", "inventory", "wood", "code"))
    scripted.answers = [no_goal, code(GOOD_CODE), code(GOOD_CODE)]
    state, _ = run("crafter:place_table", tmp_path, plan_revisions=1, **ONE_PASS)
    steps = state["plan"]["sub_actions"]
    assert [s["id"] for s in steps] == ["wood", "place_table"]
    assert steps[-1]["predicate"] == {"kind": "achievement", "name": "place_table", "at_least": 1}
    assert steps[0]["predicate"]["at_least"] >= 2  # the rules' count for the added step
    assert state["usage"]["planner"]["calls"] == 1  # a complete plan: no second call
    assert not [e for e in state["errors"] if e["kind"] == "plan_lacks"]


def test_a_full_plan_without_the_goal_is_sent_back(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    full = plan(*[(f"wood{i}", "inventory", "wood", "code") for i in range(8)])
    scripted.answers = [full, plan(("table", "achievement", "place_table", "code"))]
    scripted.answers += [code(GOOD_CODE)]
    state, _ = run("crafter:place_table", tmp_path, plan_revisions=1, **ONE_PASS)
    revision = str(scripted.prompts[1][-1].content)
    assert "no step checks the task's goal (achievement place_table unlocked)" in revision
    # The plan that has the goal step goes ahead, with the rules' gap on record.
    assert [s["id"] for s in state["plan"]["sub_actions"]] == ["table"]


def test_planner_raises_a_short_count_itself(scripted: ScriptedChatModel, tmp_path: Path) -> None:
    scripted.answers = [
        plan(
            ("get_wood", "inventory", "wood", "code"),
            ("table", "achievement", "place_table", "code"),
        ),
        code(GOOD_CODE),
        code(GOOD_CODE),
    ]
    state, _ = run("crafter:place_table", tmp_path, plan_revisions=2, **ONE_PASS)
    first = state["plan"]["sub_actions"][0]
    assert first["predicate"] == {"kind": "inventory", "name": "wood", "at_least": 2}
    assert first["description"].endswith("(inventory wood >= 2)")
    assert state["usage"]["planner"]["calls"] == 1
    assert not [e for e in state["errors"] if e["kind"] == "plan_lacks"]


def test_coder_repairs_code_with_the_checks_trace(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    scripted.answers = [
        plan(("get_wood", "achievement", "collect_wood", "code")),
        code(CLAIMS_TOO_EARLY),
        code(GOOD_CODE),
    ]
    state, order = run("crafter:collect_wood", tmp_path, code_repairs=2, max_inner_loops=0)
    assert order.count("coder") == 1
    repair = str(scripted.prompts[2][-1].content)
    assert "the action returned True after 1 env steps, but the check does not hold" in repair
    assert "api.noop() -> True" in repair  # the skill calls it made
    assert "Previous code:" in repair and "api.noop()" in repair
    assert "gave up before acting" not in repair  # it acted: no hint about exploring
    entry = state["library"]["get_wood"]
    assert entry["check"]["success_rate"] == 1.0
    assert "attempt 2" in entry["description"]
    assert state["usage"]["coder"]["calls"] == 2
    assert state["evaluations"][-1]["task_success_rate"] >= 2 / 3
    assert scripted.remaining == 0


def test_passed_code_is_reused_by_a_later_run(scripted: ScriptedChatModel, tmp_path: Path) -> None:
    steps = ("get_wood", "achievement", "collect_wood", "code")
    scripted.answers = [plan(steps), code(GOOD_CODE)]
    first, _ = run("crafter:collect_wood", tmp_path, reuse_library=True, **ONE_PASS)
    assert first["library"]["get_wood"]["check"]["success_rate"] == 1.0
    shared = SharedLibrary(tmp_path / "shared_library" / "crafter")  # one folder per env
    found = shared.find(_achievement("collect_wood"))
    assert found is not None and found[0] == GOOD_CODE

    # A second run (another thread) plans the same step: no coder call, the code is checked
    # again from this plan's start and used.
    scripted.answers.append(plan(("wood_first", "achievement", "collect_wood", "code")))
    second, _ = run("crafter:collect_wood", tmp_path, reuse_library=True, thread="t2", **ONE_PASS)
    entry = second["library"]["wood_first"]
    assert "reused from the shared library" in entry["description"]
    assert entry["check"]["success_rate"] == 1.0
    assert "coder" not in second["usage"]
    assert second["evaluations"][-1]["task_success_rate"] >= 2 / 3
    assert scripted.remaining == 0


def test_shared_library_keeps_the_better_version(tmp_path: Path) -> None:
    shared = SharedLibrary(tmp_path)
    pred = _achievement("collect_wood")
    assert shared.publish(pred, GOOD_CODE, "wood", {"success_rate": 0.8, "episodes": 5})
    assert shared.publish(pred, CLAIMS_TOO_EARLY, "worse", {"success_rate": 0.5}) is None
    better = shared.publish(pred, GOOD_CODE + "\n", "better", {"success_rate": 1.0})
    assert better is not None and better.version == 2
    found = shared.find(pred)
    assert found is not None and found[1].description == "better"
    assert shared.find(Predicate(kind="inventory", name="wood", at_least=2)) is None
    json.loads((tmp_path / "library.json").read_text())  # the manifest stays valid JSON


def test_check_feedback_names_a_give_up_before_acting() -> None:
    from rlgpt.graph.schemas import SubAction
    from rlgpt.nodes.coder import check_feedback

    step = SubAction(
        id="get_wood", description="d", predicate=_achievement("collect_wood"), method="code"
    )
    check = {
        "episodes": 2,
        "successes": 1,
        "results": [
            {"seed": 0, "success": True},
            {
                "seed": 1,
                "success": False,
                "reason": "the action returned False without taking any env step",
                "inventory": {"health": 9},
                "trace": ["api.seen('tree') -> False"],
            },
        ],
        "errors": [],
    }
    text = check_feedback(check, step)
    assert text.splitlines() == [
        "Run on 2 episodes, the check (achievement collect_wood unlocked) held in 1.",
        "Episode 1: the action returned False without taking any env step; inventory at the "
        "end: health 9.",
        "Last skill calls: api.seen('tree') -> False",
        "It gave up before acting. When what it needs is not seen yet, call api.explore() and "
        "look again instead of returning False.",
    ]


def _count_check(
    item: str, at_least: int, reason: str, held: dict[str, int]
) -> tuple[dict[str, Any], SubAction]:
    """A step checking `inventory item >= at_least` and one failed check episode."""
    pred = Predicate(kind="inventory", name=item, at_least=at_least)
    step = SubAction(id=f"collect_{item}", description="d", predicate=pred, method="code")
    failed = {"seed": 3, "success": False, "reason": reason, "inventory": held}
    return {"episodes": 1, "successes": 0, "results": [failed], "errors": []}, step


def test_check_feedback_names_a_loop_that_stopped_short() -> None:
    from rlgpt.nodes.coder import check_feedback

    reason = "the action returned False after 40 env steps"
    check, step = _count_check("stone", 6, reason, {"stone": 5, "wood_pickaxe": 1})
    hint = (
        "It returned False holding 5 stone of the 6 the check needs: its loop ended too early. "
        "A pass gets at most one stone and may fail, so give it several tries for each one, "
        "e.g. `for _ in range(30):`."
    )
    assert check_feedback(check, step).splitlines()[-1] == hint
    # Not when nothing was collected (another mistake), nor for an env without the skill.
    empty = {**check, "results": [{**check["results"][0], "inventory": {}}]}
    assert hint not in check_feedback(empty, step)
    assert hint not in check_feedback(check, step, skills=["explore", "do"])


def test_check_feedback_names_a_claim_of_too_few() -> None:
    from rlgpt.nodes.coder import check_feedback

    reason = "the action returned True after 4 env steps, but the check does not hold"
    check, step = _count_check("wood", 3, reason, {"wood": 1})
    hint = (
        "It returned True holding 1 wood of the 3 the check needs: return True only once "
        "api.count('wood') >= 3."
    )
    assert check_feedback(check, step).splitlines()[-1] == hint
    assert hint not in check_feedback(check, step, skills=["explore", "do"])


def test_check_feedback_names_what_the_code_seeks_that_the_manual_does_not() -> None:
    from rlgpt.envs.base import load_adapter
    from rlgpt.graph.schemas import SubAction
    from rlgpt.nodes.coder import check_feedback

    manual = load_adapter("crafter").manual()
    step = SubAction(
        id="make_stone_pickaxe",
        description="d",
        predicate=_achievement("make_stone_pickaxe"),
        method="code",
    )
    seeks_furnace = (
        "def run(api):\n"
        "    for _ in range(5):\n"
        "        if api.seen('furnace'):\n"
        "            api.move_to('table')\n"
        "            api.make('stone_pickaxe')\n"
        "    return False\n"
    )
    failed = {"seed": 0, "success": False, "reason": "the action returned False after 9 env steps"}
    check = {"episodes": 1, "successes": 0, "results": [failed], "errors": []}
    text = check_feedback(check, step, None, seeks_furnace, manual)
    assert text.splitlines()[-1] == (
        "The code looks for furnace, which the manual's lines about make_stone_pickaxe do not "
        "name: - make_stone_pickaxe: make stone_pickaxe (uses 1 wood, 1 stone; nearby table)"
    )
    # Code that seeks only what the manual names, or does not parse, gets no such line.
    fine = seeks_furnace.replace("furnace", "table")
    assert "which the manual's lines" not in check_feedback(check, step, None, fine, manual)
    assert "which the manual's lines" not in check_feedback(check, step, None, "def (", manual)


def test_no_repair_when_the_earlier_steps_failed() -> None:
    from rlgpt.nodes.coder import earlier_steps_failed

    def result(success: bool, prelude_ok: bool) -> dict[str, bool]:
        return {"success": success, "prelude_ok": prelude_ok}

    assert earlier_steps_failed({"results": [result(True, True), result(False, False)]})
    assert not earlier_steps_failed({"results": [result(False, True), result(False, False)]})
    assert not earlier_steps_failed({"results": [result(True, True)]})
    assert not earlier_steps_failed({"results": []})


def test_a_step_named_after_an_achievement_checks_it() -> None:
    from rlgpt.envs.base import load_adapter
    from rlgpt.graph.schemas import Plan, check_plan

    copied = plan(
        ("make_wood_pickaxe", "achievement", "make_stone_pickaxe", "code"),
        ("make_stone_pickaxe", "achievement", "make_stone_pickaxe", "code"),
        ("get_wood", "achievement", "collect_wood", "code"),
        # A neighbour's item check copied onto an achievement step: the achievement counts.
        ("eat_cow", "inventory", "sapling", "code"),
        # The item in the step's own name is a check of its own: kept.
        ("collect_stone", "inventory", "stone", "code"),
        ("make_stone_sword", "inventory", "stone_sword", "code"),
    )
    checked = check_plan(Plan.model_validate(json.loads(copied)), load_adapter("crafter"))
    checks = [(s.predicate.kind, s.predicate.name) for s in checked.sub_actions]
    assert checks == [
        ("achievement", "make_wood_pickaxe"),
        ("achievement", "make_stone_pickaxe"),
        ("achievement", "collect_wood"),
        ("achievement", "eat_cow"),
        ("inventory", "stone"),
        ("inventory", "stone_sword"),
    ]


def test_repeated_achievement_steps_are_dropped(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    steps = [("wood", "inventory", "wood", "code"), ("table", "achievement", "place_table", "code")]
    steps += [("table2", "achievement", "place_table", "code")]
    scripted.answers = [plan(*steps), code(GOOD_CODE), code(GOOD_CODE)]
    state, _ = run("crafter:place_table", tmp_path, plan_revisions=0, **ONE_PASS)
    assert [s["id"] for s in state["plan"]["sub_actions"]] == ["wood", "table"]
