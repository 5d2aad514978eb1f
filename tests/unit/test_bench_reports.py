"""Bench result files: provenance, the model-speed and tasks suites' summaries and markdown."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rlgpt.bench import writers
from rlgpt.bench.cli import add_bench_arguments, render_markdown, run_bench
from rlgpt.bench.model_speed import ModelSpeedConfig, run_model_speed
from rlgpt.bench.model_speed_probes import ROLES, Probe, schedule
from rlgpt.bench.model_speed_report import model_speed_markdown, write_model_speed
from rlgpt.bench.tasks import TasksConfig, run_tasks
from rlgpt.bench.tasks_records import aggregate, env_steps_of, failure_of, record_from_state
from rlgpt.bench.tasks_report import tasks_markdown, write_tasks
from rlgpt.llm.local_server import LocalServerConfig
from tests.helpers import assert_contains

REPO = Path(__file__).resolve().parents[2]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser.parse_args(list(argv))


# ------------------------------------------------------------------ provenance
def _tree_diff() -> bytes:
    return subprocess.run(
        ["git", "diff", "HEAD", "--", ".", writers.RESULTS_PATHSPEC],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout


def test_envelope_records_commit_tree_state_and_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["rlgpt", "bench", "model", "--tag", "x"])
    # Someone editing the tree while the envelope is made would change the diff under it:
    # take an envelope made while the tree held still (a few tries, then fail).
    for _ in range(3):
        before = _tree_diff()
        head = writers.envelope("model_speed", {"a": 1})
        diff = _tree_diff()
        if diff == before:
            break
    else:
        pytest.fail("the working tree kept changing while the envelope was made")
    git = head["git"]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git["commit"] == commit
    assert head["command"] == ["rlgpt", "bench", "model", "--tag", "x"]
    assert head["config"] == {"a": 1} and head["machine"]["cpu_count"] >= 1
    lines = writers.provenance_lines(head)
    assert commit in lines[0]
    assert lines[1] == "- command: `rlgpt bench model --tag x`"
    assert git["dirty"] is (bool(diff) or bool(git.get("untracked_count")))
    if diff:
        # The fingerprint is reproducible from the shell with the recorded command.
        assert git["diff_sha256"] == hashlib.sha256(diff).hexdigest()
        assert "sha256 " + git["diff_sha256"] in lines[0]
    else:
        assert "diff_sha256" not in git


def test_committed_results_render_to_their_markdown() -> None:
    results = sorted((REPO / "bench" / "results").glob("*.json"))
    assert results, "no result files to check"
    for path in results:
        result = json.loads(path.read_text())
        assert path.with_suffix(".md").read_text() == render_markdown(result), path.name


def test_render_rewrites_markdown_from_json(tmp_path: Path) -> None:
    result = _tasks_result()
    json_path = tmp_path / "tasks_x.json"
    json_path.write_text(json.dumps(result))
    assert run_bench(_args("--render", str(json_path))) == 0
    assert (tmp_path / "tasks_x.md").read_text() == tasks_markdown(result)


# ------------------------------------------------------------------ model speed
def test_schedule_interleaves_roles_and_rotates_cold_variants() -> None:
    rounds = schedule(rounds=3, repeats=2)
    assert len(rounds) == 3
    for calls in rounds:
        assert [role for role, _, _ in calls] == list(ROLES) * 3
        assert [kind for _, _, kind in calls] == ["cold"] * 3 + ["repeated"] * 6
    cold = sorted(
        v for calls in rounds for role, v, kind in calls if kind == "cold" and role == "coder"
    )
    repeated = sorted(
        v for calls in rounds for role, v, kind in calls if kind == "repeated" and role == "coder"
    )
    # Every variant is cold once and repeated twice: both kinds cover the same answers.
    assert cold == [0, 1, 2] and repeated == [0, 0, 1, 1, 2, 2]


class _FakeServer:
    def __init__(self, slots: int, started: list[int]) -> None:
        self.slots = slots
        self.index = len(started)
        started.append(slots)

    def __enter__(self) -> str:
        # A fresh server has an empty cache: its URL is new, and ends in its slot count.
        return f"http://127.0.0.1:1/v1?server={self.index}#{self.slots}"

    def __exit__(self, *exc: object) -> None:
        return None


def _fake_call(base_url: str, model: str, probe: Probe, config: ModelSpeedConfig) -> dict[str, Any]:
    """A cached call takes 1 s of prompt time, an uncached one 10 s; generation 2 s."""
    cache_on = not base_url.endswith("#0")
    seen = _fake_call.seen  # type: ignore[attr-defined]
    key = (base_url, probe.role)
    cached = 900 if cache_on and key in seen else 0
    seen.add(key)
    prompt_s = 1.0 if cached else 10.0
    return {
        "prompt_tokens": 1000,
        "cached_tokens": cached,
        "evaluated_tokens": 1000 - cached,
        "completion_tokens": 40,
        "prompt_seconds": prompt_s,
        "generate_seconds": 2.0,
        "call_seconds": prompt_s + 2.0,
        "prompt_tps": (1000 - cached) / prompt_s,
        "generate_tps": 20.0,
        "finish_reason": "stop",
        "answer_sha256": f"{probe.role}{probe.variant}",
        "answer": "{}",
    }


def test_model_speed_summary_and_files(tmp_path: Path) -> None:
    _fake_call.seen = set()  # type: ignore[attr-defined]
    started: list[int] = []
    # With the cache on, the suite runs the local server's own default number of slots.
    assert ModelSpeedConfig().cache_slots == LocalServerConfig().prefix_slots
    config = ModelSpeedConfig(model="smollm2", rounds=3, repeats=2, max_tokens=32, cache_slots=4)
    partial: list[dict[str, Any]] = []
    measured = run_model_speed(
        config,
        caller=_fake_call,
        server_factory=lambda slots: _FakeServer(slots, started),
        on_round=partial.append,
    )
    # The result so far after every round and cache setting, for files a killed suite leaves.
    assert [len(p["calls"]) for p in partial] == [9, 18, 27, 36, 45, 54]
    assert [p["complete"] for p in partial] == [False] * 5 + [True]
    assert "Partial result: 9 of 54 calls made." in model_speed_markdown(
        {**writers.envelope("model_speed", {}), **partial[0]}
    )
    assert measured["complete"] and measured["planned_calls"] == 54
    # A fresh server per round and cache setting, off and on in turn.
    assert started == [0, 4, 0, 4, 0, 4]
    assert len(measured["calls"]) == 2 * 3 * 9
    rows = {(r["role"], r["cache"]): r for r in measured["summary"]}
    assert set(rows) == {(role, cache) for role in ROLES for cache in ("off", "on")}
    on, off = rows[("planner", "on")], rows[("planner", "off")]
    assert on["cold"]["call_seconds"]["median"] == 12.0
    assert on["repeated"]["call_seconds"]["median"] == 3.0
    assert on["ratio_call_seconds"] == pytest.approx(0.25)
    assert on["ratio_prompt_seconds"] == pytest.approx(0.1)
    assert on["repeated"]["cached_tokens"] == {"median": 900, "min": 900, "max": 900, "n": 6}
    assert off["ratio_call_seconds"] == pytest.approx(1.0)
    assert on["answers_match_cache_off"] is True
    # Each probe is a real prompt of its role: the last user message differs between variants.
    assert [p["variant"] for p in measured["probes"]["coder"]] == [0, 1, 2, 3]

    result = {**writers.envelope("model_speed", measured.pop("config")), **measured}
    paths = write_model_speed(result, tmp_path, "fake")
    loaded = json.loads(paths["json"].read_text())
    assert paths["markdown"].read_text() == model_speed_markdown(loaded)
    assert paths["markdown"].read_text() == render_markdown(loaded)
    table = paths["markdown"].read_text()
    assert "| planner | 12.0 | 12.0 | 1.00 | 12.0 | 3.0 | 0.25 |" in table
    assert paths["png"].stat().st_size > 1000


def test_model_speed_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="repeats"):
        ModelSpeedConfig(repeats=4).validate()
    assert run_bench(_args("model", "--model", "openai:gpt-4o")) == 2


# ------------------------------------------------------------------ tasks
def _usage(
    calls: int, cached: int, tokens_in: int, tokens_out: int, seconds: float
) -> dict[str, Any]:
    return {
        "calls": calls,
        "cached_calls": cached,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "seconds": seconds,
    }


def _state(tmp_path: Path, success: float, with_code: bool = True) -> dict[str, Any]:
    code = tmp_path / "library" / "code" / "get_wood.py"
    code.parent.mkdir(parents=True, exist_ok=True)
    code.write_text("def run(api):\n    return api.do()\n")
    library = {}
    if with_code:
        library["get_wood"] = {
            "name": "get_wood",
            "kind": "code",
            "path": str(code),
            "check": {"success_rate": 0.0, "results": [{"steps": 30}, {"steps": 12}]},
        }
    return {
        "task": "crafter:collect_wood",
        "run_dir": str(tmp_path),
        "report_path": str(tmp_path / "report.md"),
        "plan": {
            "sub_actions": [
                {"id": "find_tree", "method": "rl", "predicate": {}},
                {"id": "get_wood", "method": "code", "predicate": {}},
            ]
        },
        "library": library,
        "setups": {"find_tree": {"code_actions": [], "episode_length": 100}},
        "rl_runs": [{"env_steps": 500}, {"env_steps": 520}],
        "evaluations": [
            {"episodes": 2, "mean_length": 10.0, "task_success_rate": 0.0, "failures": []},
            {
                "episodes": 4,
                "mean_length": 25.5,
                "task_success_rate": success,
                "subaction_success": {"find_tree": 1.0, "get_wood": success},
                "failures": [
                    {"subaction": "get_wood", "reason": "returned False: no tree"},
                    {"subaction": "get_wood", "reason": "step budget spent"},
                    {"subaction": "find_tree", "reason": "step budget spent"},
                ],
            },
        ],
        "verdicts": [
            {"route": "coder", "feedback": "get_wood never reaches a tree", "source": "llm"},
            {"route": "end", "feedback": "Budgets spent.", "source": "budget"},
        ],
        "errors": [{"node": "coder", "kind": "llm_invalid", "message": "bad JSON"}],
        "usage": {
            "planner": _usage(1, 0, 2000, 100, 30.0),
            "coder": _usage(3, 1, 6000, 300, 45.5),
        },
    }


def test_run_record_counts_steps_usage_and_names_the_failing_step(tmp_path: Path) -> None:
    state = _state(tmp_path, success=0.25)
    assert env_steps_of(state) == {
        "rl_jobs": 1020,
        "evaluations": 20 + 102,
        "code_checks": 42,
        "total": 1020 + 122 + 42,
    }
    # A run's own ledger, when it has one, counts every step (preludes, earlier checks).
    ledger = {"rl": 1020, "rl_prelude": 80, "evaluation": 122, "code_check": 300}
    assert env_steps_of({**state, "env_steps": ledger}) == {
        "rl_jobs": 1100,
        "evaluations": 122,
        "code_checks": 300,
        "total": 1522,
        "every_step": True,
    }
    record = record_from_state("crafter:collect_wood", 1, state, 321.04, success_threshold=0.8)
    assert record["success"] == 0.25 and record["episodes"] == 4 and not record["solved"]
    assert record["llm"]["calls"] == 4 and record["llm"]["cached_calls"] == 1
    assert record["llm"]["input_tokens"] == 8000 and record["llm"]["output_tokens"] == 400
    assert record["llm"]["seconds"] == 75.5
    assert record["wall_time"] == 321.0 and record["plan"] == ["find_tree (rl)", "get_wood (code)"]
    failure = record["failure"]
    # Most failed episodes stopped at get_wood.
    assert failure["step"] == "get_wood" and failure["method"] == "code"
    assert failure["reason"] == "returned False: no tree"
    assert failure["code"] == "def run(api):\n    return api.do()\n"
    assert failure["critic_feedback"] == "Budgets spent." and failure["critic_source"] == "budget"
    assert failure["critic_model_feedback"] == "get_wood never reaches a tree"

    solved = record_from_state("crafter:collect_wood", 0, _state(tmp_path, 0.9), 10.0, 0.8)
    assert solved["solved"] and "failure" not in solved

    no_code = _state(tmp_path, 0.0, with_code=False)
    assert record_from_state("t", 0, no_code, 1.0, 0.8)["failure"]["code"] is None


def _run(task: str, seed: int, success: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "task": task,
        "seed": seed,
        "status": "finished",
        "success": success,
        "episodes": 10 if success is not None else 0,
        "solved": success is not None and success >= 0.8,
        "plan": ["a (code)"],
        "llm": {"calls": 4, "input_tokens": 9000, "output_tokens": 500, "seconds": 100.0},
        "env_steps": {"rl_jobs": 0, "evaluations": 300, "code_checks": 50, "total": 350},
        "wall_time": 200.0,
        "run_dir": f"runs/{task}-{seed}",
        **extra,
    }


WOOD_FAILURE = {
    "step": "get_wood",
    "method": "code",
    "code": "def run(api):\n    return False\n",
    "critic_feedback": "fix it",
    "critic_source": "llm",
}


def _tasks_result() -> dict[str, Any]:
    runs = [
        _run("crafter:collect_wood", 0, 1.0),
        _run(
            "crafter:collect_wood",
            1,
            0.5,
            failure=WOOD_FAILURE,
        ),
        _run("crafter:place_table", 0, None, failure={"step": None, "reason": "no evaluation"}),
        {
            "task": "crafter:place_table",
            "seed": 1,
            "status": "crashed",
            "success": None,
            "solved": False,
            "error": "RuntimeError: boom",
            "wall_time": 3.0,
            "run_dir": "runs/x",
        },
    ]
    tasks = ["crafter:collect_wood", "crafter:place_table"]
    config = {
        "tasks": tasks,
        "seeds": [0, 1],
        "model": "local:qwen2.5-coder-1.5b",
        "context": {"max_outer_loops": 0},
        "effective_context": {"privileged": False, "max_inner_loops": 2, "eval_episodes": 10},
    }
    result = {**writers.envelope("tasks", config), "invocations": [], "runs": runs}
    result["aggregate"] = aggregate(runs, tasks)
    return result


def test_tasks_aggregate_and_markdown() -> None:
    result = _tasks_result()
    wood, table = result["aggregate"]
    assert wood["task"] == "crafter:collect_wood" and wood["n"] == 2
    assert wood["mean_success"] == 0.75 and wood["per_seed"] == {"0": 1.0, "1": 0.5}
    assert wood["solved"] == 1 and wood["mean_llm_calls"] == 4.0
    # A run without an evaluation and a crashed run both count as 0.
    assert table["mean_success"] == 0.0 and table["n"] == 2
    assert table["crashed"] == 1 and table["no_evaluation"] == 1
    md = tasks_markdown(result)
    assert_contains(
        md,
        "| crafter:collect_wood | 75% | 2 | 0: 100%, 1: 50% | 1/2 |",
        "Privileged full-map mode: not used",
        "- failing step: `get_wood` (code)",
        "def run(api):\n    return False",
        "- critic's last feedback (llm): fix it",
        "The run raised `RuntimeError: boom`.",
    )
    assert "Not counted" in md and "before" not in md.split("## Runs")[0]

    result["compare"] = {
        "file": "tasks_smollm2.json",
        "model": "local:smollm2",
        "created": "earlier",
        "aggregate": {"crafter:collect_wood": {"mean_success": 0.1, "n": 3, "per_seed": {}}},
    }
    md = tasks_markdown(result)
    assert "| before |" in md.splitlines()[6] and "10% (n=3)" in md


def test_tasks_suite_resumes_and_writes_after_every_run(tmp_path: Path) -> None:
    out = tmp_path / "results"
    calls: list[tuple[str, int]] = []
    config = TasksConfig(
        tasks=["crafter:collect_wood", "crafter:place_table"],
        seeds=[0, 1],
        model="local:smollm2",
        context={"max_inner_loops": 0, "rl_timesteps": 500},
        runs_dir=str(tmp_path / "runs"),
    )

    def invoke(task: str, ctx: Any, on_chunk: Any) -> dict[str, Any]:
        # The JSON on disk holds every run finished before this one.
        done = json.loads((out / "tasks_t.json").read_text())["runs"]
        assert len(done) == len(calls)
        calls.append((task, ctx.seed))
        assert ctx.planner_model == ctx.coder_model == ctx.critic_model == "local:smollm2"
        assert ctx.rl_timesteps == 500 and not ctx.privileged
        assert Path(ctx.runs_dir).parent == tmp_path / "runs"
        if (task, ctx.seed) == ("crafter:place_table", 1):
            raise RuntimeError("boom")
        state = _state(tmp_path / f"{task}-{ctx.seed}", success=0.5 * ctx.seed)
        return {**state, "task": task}

    paths = run_tasks(config, out, "t", invoke=invoke)
    # Seed by seed, so an interrupted bench has every task of the first seeds.
    assert calls == [
        ("crafter:collect_wood", 0),
        ("crafter:place_table", 0),
        ("crafter:collect_wood", 1),
        ("crafter:place_table", 1),
    ]
    result = json.loads(paths["json"].read_text())
    assert [(r["task"], r["seed"], r["status"]) for r in result["runs"]] == [
        ("crafter:collect_wood", 0, "finished"),
        ("crafter:collect_wood", 1, "finished"),
        ("crafter:place_table", 0, "finished"),
        ("crafter:place_table", 1, "crashed"),
    ]
    assert paths["markdown"].read_text() == tasks_markdown(result)

    # Resuming runs only the crashed pair again.
    calls.clear()
    paths = run_tasks(
        config, out, "t", resume=True, invoke=lambda t, c, cb: {**_state(tmp_path, 1.0), "task": t}
    )
    result = json.loads(paths["json"].read_text())
    assert [r["status"] for r in result["runs"]] == ["finished"] * 4
    assert len(result["invocations"]) == 2
    assert [r["invocation"] for r in result["runs"]] == [0, 0, 0, 1]
    assert result["aggregate"][1]["per_seed"] == {"0": 0.0, "1": 1.0}

    with pytest.raises(ValueError, match="cannot resume"):
        run_tasks(
            TasksConfig(**{**config.__dict__, "model": "local:other"}),
            out,
            "t",
            resume=True,
            invoke=invoke,
        )


def test_tasks_suite_rejects_unattended_reviews_and_unknown_tasks(tmp_path: Path) -> None:
    config = TasksConfig(
        tasks=["crafter:collect_wood"], seeds=[0], context={"approve_plan": True},
        runs_dir=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(ValueError, match="unattended"):
        run_tasks(config, tmp_path, "t", invoke=lambda *a: {})
    args = _args("tasks", "--tasks", "crafter:no_such_task", "--out", str(tmp_path))
    assert run_bench(args) == 2


def test_tasks_write_is_regenerable(tmp_path: Path) -> None:
    result = _tasks_result()
    paths = write_tasks(result, tmp_path, "r")
    loaded = json.loads(paths["json"].read_text())
    assert paths["markdown"].read_text() == render_markdown(loaded)
    assert paths["png"].stat().st_size > 1000


def test_context_file_may_be_toml(tmp_path: Path) -> None:
    from rlgpt.bench.tasks import read_context_file

    toml = tmp_path / "c.toml"
    toml.write_text('[run]\ntask = "crafter:collect_wood"\nmax_inner_loops = 0\n')
    assert read_context_file(toml) == {"max_inner_loops": 0}
    data = tmp_path / "c.json"
    data.write_text('{"eval_episodes": 2}')
    assert read_context_file(data) == {"eval_episodes": 2}


def test_model_speed_makes_a_round_again_when_its_server_goes_away() -> None:
    import httpx

    _fake_call.seen = set()  # type: ignore[attr-defined]
    failures = [httpx.RemoteProtocolError("Server disconnected without sending a response.")]

    def flaky(base_url: str, model: str, probe: Probe, config: ModelSpeedConfig) -> dict[str, Any]:
        if probe.role == "coder" and failures:
            raise failures.pop()
        return _fake_call(base_url, model, probe, config)

    started: list[int] = []
    measured = run_model_speed(
        ModelSpeedConfig(model="smollm2", rounds=1, repeats=1, cache_slots=4),
        caller=flaky,
        server_factory=lambda slots: _FakeServer(slots, started),
    )
    # The lost round is made again on a fresh server; its calls so far are dropped.
    assert started == [0, 0, 4]
    assert [s.get("lost", "") != "" for s in measured["servers"]] == [True, False, False]
    assert len(measured["calls"]) == 12 and measured["complete"]
    cold = [c for c in measured["calls"] if c["cache"] == "off" and c["kind"] == "cold"]
    assert [c["role"] for c in cold] == list(ROLES)


def test_failure_of_a_run_whose_steps_all_succeeded() -> None:
    steps = [{"id": "get_wood", "method": "code"}, {"id": "table", "method": "code"}]
    state = {
        "plan": {"sub_actions": steps},
        "evaluations": [{"failures": [], "subaction_success": {"get_wood": 1.0, "table": 1.0}}],
    }
    failure = failure_of(state)
    assert failure["step"] is None
    assert failure["reason"] == "every step succeeded in every episode, yet the task did not"
    state["evaluations"][0]["subaction_success"]["table"] = 0.5
    assert failure_of(state)["step"] == "table"


def test_graph_run_lines_say_when_wall_time_covers_only_the_last_attempt() -> None:
    from rlgpt.bench.learning_report import _graph_run_lines

    method = {"key": "d", "observation": "symbolic", "label": "full loop"}
    run = {
        "seed": 1,
        "wall_time": 100.0,
        "resumes": 1,
        "wall_time_complete": False,
        "note": "rates over 5 episodes; 1 RL job(s); env steps: rl 10",
        "env_steps_by_part": {"rl": 10},
        "usage": {"coder": {"calls": 3, "input_tokens": 5, "output_tokens": 2, "seconds": 250.0}},
    }
    lines = _graph_run_lines(method, run)
    assert lines[0] == "- d (symbolic) seed 1: rates over 5 episodes; 1 RL job(s)"
    assert lines[1] == "  - env steps: rl 10"
    assert "250.0 s over all 2 attempts (the last attempt took 100.0 s" in lines[-1]
    complete = _graph_run_lines(method, {**run, "resumes": 0, "wall_time_complete": True})
    assert complete[-1] == "  - model: 3 calls, 7 tokens, 250.0 s of 100.0 s wall time"
