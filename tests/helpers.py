"""Helpers shared by the tests: code actions, sandbox limits, scripted model answers, plans,
skill specs, graph runs and a check of report text.

The graph helpers drive the real graph (`rlgpt.graph.builder`) with an in-memory
checkpointer; `scripted_context` points its three models at the scripted chat model of
the `scripted` fixture (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.envs.base import SkillParam, SkillSpec
from rlgpt.exit_codes import ExitCode
from rlgpt.graph.builder import builder
from rlgpt.graph.context import Context

# --------------------------------------------------------------------------- code actions

#: Collects one wood on Crafter: walk to a seen tree and hit it, explore while none is seen.
GOOD_CODE = """def run(api):
    while api.count("wood") < 1:
        if api.seen("tree"):
            api.move_to("tree")
            api.do()
        else:
            api.explore(10)
    return True
"""


def fetch_code(item: str) -> str:
    """A grid-world code action: walk to a seen `item` and take it, exploring while none is
    seen (10 tries)."""
    return f"""def run(api):
    for _ in range(10):
        if api.count("{item}") >= 1:
            return True
        if api.seen("{item}"):
            api.move_to("{item}")
            api.do()
        else:
            api.explore(10)
    return False
"""


#: The grid world's gem task in three steps: the key by code, the door by RL, the gem by code.
GRIDWORLD_PLAN: dict[str, Any] = {
    "rationale": "The gem lies behind the locked door; the door needs the key.",
    "sub_actions": [
        {
            "id": "get_key",
            "description": "Pick up the key.",
            "predicate": {"kind": "inventory", "name": "key", "at_least": 1},
            "method": "code",
            "reason": "Walk to the key and pick it up.",
        },
        {
            "id": "open_door",
            "description": "Open the door with the key.",
            "predicate": {"kind": "achievement", "name": "open_door"},
            "method": "rl",
            "reason": "Learned.",
        },
        {
            "id": "get_gem",
            "description": "Take the gem.",
            "predicate": {"kind": "achievement", "name": "collect_gem"},
            "method": "code",
            "reason": "Walk to the gem and take it.",
        },
    ],
}


def undefined_name_code(item: str, target: str, name: str) -> str:
    """Code that passes the static check, then fails at run time on every call: `name` is
    never defined."""
    return (
        "def run(api):\n"
        f'    while api.count("{item}") < {name}:\n'
        f'        api.move_to("{target}")\n'
        "        api.do()\n"
        "    return True\n"
    )


#: Limits where CPU is the tighter one, so busy code ends as a `cpu` error even on a loaded
#: machine (and code stuck in one C-level call ends its worker after a second).
CPU_LIMITS = SandboxLimits(wall_seconds=20.0, cpu_seconds=1.0, hard_stop_grace_seconds=1.0)

# --------------------------------------------------------------------------- model answers


def plan(*steps: tuple[str, str, str, str]) -> str:
    """A plan answer: (id, predicate kind, predicate name, method) per step."""
    return json.dumps(
        {
            "sub_actions": [
                {
                    "id": sid,
                    "description": f"get {name}",
                    "predicate": {"kind": kind, "name": name},
                    "method": method,
                    "reason": "test",
                }
                for sid, kind, name, method in steps
            ],
            "rationale": "scripted",
        }
    )


def code(source: str) -> str:
    """A coder's code-action answer."""
    return json.dumps({"code": source, "explanation": "scripted"})


def verdict(route: str, ids: list[str] | None = None, feedback: str = "") -> str:
    """A critic's answer."""
    return json.dumps({"route": route, "subaction_ids": ids or [], "feedback": feedback})


# --------------------------------------------------------------------------- plans as state


def rl_plan(
    step_id: str = "get_wood",
    description: str = "Collect one piece of wood from a tree.",
    item: str = "wood",
) -> dict[str, Any]:
    """A plan of one learned step that ends with one `item` in the inventory."""
    step = {
        "id": step_id,
        "description": description,
        "predicate": {"kind": "inventory", "name": item, "at_least": 1},
        "method": "rl",
        "reason": "Learned.",
    }
    return {"sub_actions": [step], "rationale": "One learned step."}


#: The RL set-up of a learned step: primitive actions only, 100-step episodes.
RL_SETUP = {"code_actions": [], "shaping": [], "episode_length": 100, "start_after_previous": False}


def coder_output(plan: dict[str, Any]) -> dict[str, Any]:
    """The state update the coder makes for a one-step `plan`: the step's RL set-up, to do."""
    step = plan["sub_actions"][0]["id"]
    return {"plan": plan, "setups": {step: RL_SETUP}, "todo": [step]}


# --------------------------------------------------------------------------- skill specs

#: A small Crafter-like skill API: perception, navigation and interaction skills.
SPECS = [
    SkillSpec("count", (SkillParam("item", "str"),), "int", "Items held.", "perception"),
    SkillSpec("sees", (SkillParam("target", "str"),), "bool", "Target visible.", "perception"),
    SkillSpec(
        "go_to",
        (SkillParam("target", "str"), SkillParam("max_steps", "int", default=50)),
        "bool",
        "Walk next to the nearest visible target.",
        "navigation",
        True,
    ),
    SkillSpec("do", (), "bool", "Interact with the facing tile.", "interaction", True),
    SkillSpec(
        "place",
        (SkillParam("item", "str", choices=("stone", "table")),),
        "bool",
        "Place an item in front.",
        "interaction",
        True,
    ),
    SkillSpec("explore", (SkillParam("steps", "int"),), "None", "Wander.", "navigation", True),
]

# --------------------------------------------------------------------------- graph runs


def scripted_context(runs_dir: Path, **settings: Any) -> Context:
    """A run whose three models are the scripted one (`scripted:<role>`), writing to `runs_dir`.

    No repairs inside the coder or the planner and no library shared with other tests,
    unless `settings` ask for them.
    """
    return Context(runs_dir=str(runs_dir), **{**SCRIPTED_SETTINGS, **settings})


#: The Context fields of a run on the scripted models (see `scripted_context`).
SCRIPTED_SETTINGS: dict[str, Any] = {
    "planner_model": "scripted:planner",
    "coder_model": "scripted:coder",
    "critic_model": "scripted:critic",
    "plan_revisions": 0,
    "code_repairs": 0,
    "reuse_library": False,
}


def advance(
    graph: CompiledStateGraph[Any, Any, Any, Any], inputs: Any, config: Any, ctx: Context
) -> tuple[StateSnapshot, list[str]]:
    """Stream the graph on `inputs` to its next stop; its state there and the nodes that ran."""
    order: list[str] = []
    for update in graph.stream(inputs, config, context=ctx, stream_mode="updates"):
        order.extend(update)
    return graph.get_state(config), order


def run_graph(task: str, ctx: Context, thread: str = "t1") -> tuple[dict[str, Any], list[str]]:
    """Run the graph on `task` to the end; returns the final state and the order of the nodes."""
    graph = builder.compile(checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    snapshot, order = advance(graph, {"task": task}, config, ctx)
    return dict(snapshot.values), order


def run(
    task: str, tmp_path: Path, thread: str = "t1", **settings: Any
) -> tuple[dict[str, Any], list[str]]:
    """Run the graph on `task` with the scripted models and small budgets, to the end.

    Returns the final state and the order of the nodes.
    """
    ctx = scripted_context(
        tmp_path,
        **{
            "eval_episodes": 3,
            "code_check_episodes": 2,
            "subaction_max_steps": 250,
            "code_action_max_steps": 250,
            "llm_max_retries": 1,
            "gif": False,
            **settings,
        },
    )
    return run_graph(task, ctx, thread)


#: One pass through the graph: the rules critic judges, no inner or outer loop follows.
ONE_PASS: dict[str, Any] = {"critic": "rules", "max_inner_loops": 0, "max_outer_loops": 0}


def assert_contains(text: str, *parts: str) -> None:
    """Every one of `parts` stands in `text`."""
    missing = [part for part in parts if part not in text]
    assert not missing, f"not in the text: {missing}\n{text}"


# --------------------------------------------------------------------------- measured numbers
#: Where tests that measure something keep their numbers (ignored by git, kept after the run).
TEST_RESULTS = Path(__file__).resolve().parent.parent / "runs" / "test_results"


def finished_exit_code(run_dir: Path) -> int:
    """The exit code `rlgpt run` owes a finished run: 0 at or above the critic's bar, else 6."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rate = metrics["state"]["evaluations"][-1]["task_success_rate"]
    bar = metrics["context"]["success_threshold"]
    return int(ExitCode.FINISHED if rate >= bar else ExitCode.BELOW_BAR)


def save_numbers(name: str, numbers: dict[str, Any]) -> Path:
    """Write a test's measured numbers to `runs/test_results/<name>.json`; returns the path."""
    TEST_RESULTS.mkdir(parents=True, exist_ok=True)
    path = TEST_RESULTS / f"{name}.json"
    path.write_text(json.dumps(numbers, indent=1, default=str) + "\n")
    return path


# --------------------------------------------------------------------------- processes
def listening_sockets() -> set[tuple[str, int]]:
    """Every listening TCP socket of this machine: (address as /proc/net spells it, port)."""
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, port = fields[1].rpartition(":")
            if fields[3] == "0A":  # LISTEN
                found.add((address, int(port, 16)))
    return found


def bench_args(*argv: str) -> argparse.Namespace:
    """`rlgpt bench` arguments as its parser reads them."""
    from rlgpt.bench.cli import add_bench_arguments

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser.parse_args(list(argv))
