"""`rlgpt runs` and `rlgpt runs compare`: real runs of the grid world read back.

Five real `rlgpt run`s (the grid world of tests/plugins, scripted models, SQLite
checkpoints): two that finish and differ only in the code the coder writes, one paused
for review, one stopped by a failed model endpoint, one interrupted (Ctrl-C). The
commands are called through the CLI's entry point.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from rlgpt.cli import main
from tests.fakes import Answer, scripted_backend
from tests.helpers import code, fetch_code, finished_exit_code, undefined_name_code

try:  # the OpenAI client's HTTP library: `httpx2` in recent releases, `httpx` before
    import httpx2 as http
except ImportError:  # pragma: no cover
    import httpx as http  # type: ignore[no-redef]

pytestmark = pytest.mark.integration

TASK = "gridworld:collect_key"
GET_KEY = fetch_code("key")
#: Passes the static check, then fails on line 2 of every call.
BROKEN_KEY = undefined_name_code("key", "key", "keys_needed")
PLAN = {
    "rationale": "One step: the key lies in the agent's room.",
    "sub_actions": [
        {
            "id": "get_key",
            "description": "Pick up the key.",
            "predicate": {"kind": "achievement", "name": "collect_key"},
            "method": "code",
            "reason": "Walk to the key and pick it up.",
        }
    ],
}
FLAGS = [
    "--env=gridworld",
    "--planner-model=scripted:planner",
    "--coder-model=scripted:coder",
    "--critic=rules",
    "--plan-revisions=0",
    "--code-repairs=0",
    "--max-inner-loops=0",
    "--max-outer-loops=0",
    "--no-reuse-library",
    "--no-gif",
    "--llm-max-retries=0",
    "--eval-episodes=3",
    "--code-check-episodes=2",
    "--subaction-max-steps=60",
    "--code-action-max-steps=60",
]


@dataclass(frozen=True)
class Run:
    """One `rlgpt run`: its id, exit code and how long the command took."""

    id: str
    exit_code: int
    seconds: float


@dataclass(frozen=True)
class Runs:
    """The runs of the module, under `runs_dir`."""

    runs_dir: Path
    good: Run
    broken: Run
    paused: Run
    model_error: Run
    interrupted: Run

    def metrics(self, run: Run) -> dict[str, Any]:
        """The run's metrics.json."""
        data: dict[str, Any] = json.loads((self.runs_dir / run.id / "metrics.json").read_text())
        return data


def _run(runs_dir: Path, answers: list[Answer], *extra: str) -> Run:
    """`rlgpt run` on TASK with the scripted models answering `answers`; the new run."""
    before = {p.name for p in runs_dir.iterdir()} if runs_dir.exists() else set()
    with scripted_backend("scripted") as model:
        model.answers = answers
        started = time.monotonic()
        exit_code = main(["run", "--task", TASK, "--runs-dir", str(runs_dir), *FLAGS, *extra])
        seconds = time.monotonic() - started
        assert model.remaining == 0
    (new,) = [p.name for p in runs_dir.iterdir() if p.is_dir() and p.name not in before]
    return Run(new, int(exit_code), seconds)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The runs, oldest first: good code, broken code, paused, model endpoint down, Ctrl-C."""
    runs_dir = tmp_path_factory.mktemp("runs") / "runs"
    unreachable = openai.APIConnectionError(request=http.Request("POST", "http://127.0.0.1:9"))
    made = Runs(
        runs_dir=runs_dir,
        good=_run(runs_dir, [json.dumps(PLAN), code(GET_KEY)]),
        broken=_run(runs_dir, [json.dumps(PLAN), code(BROKEN_KEY)]),
        paused=_run(runs_dir, [json.dumps(PLAN)], "--approve-plan"),
        model_error=_run(runs_dir, [unreachable]),
        # Ctrl-C while the planner waits for its model.
        interrupted=_run(runs_dir, [KeyboardInterrupt()]),
    )
    assert made.good.exit_code == 0
    # 6: the run finished below the critic's bar (older versions exit 0).
    assert made.broken.exit_code in (0, 6)
    assert (made.paused.exit_code, made.model_error.exit_code) == (3, 4)
    assert made.interrupted.exit_code == 130
    return made


def _command(*argv: str) -> int:
    """`rlgpt runs ...` through the CLI's entry point, in this process."""
    return main(["runs", *argv])


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert _command(*argv, "--json") == 0
    # json.loads of all of stdout: anything printed besides the JSON fails here.
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_run_newest_first_with_what_it_did(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = _json(capsys, "--runs-dir", str(runs.runs_dir))

    order = [runs.interrupted, runs.model_error, runs.paused, runs.broken, runs.good]
    assert [r["id"] for r in listed] == [r.id for r in order]
    by_id = {r["id"]: r for r in listed}
    assert all(r["task"] == TASK and r["env"] == "gridworld" for r in listed)
    assert {r["id"]: r["status"] for r in listed} == {
        runs.good.id: "finished",
        runs.broken.id: "finished",
        runs.paused.id: "paused",
        runs.model_error.id: "model_error",
        runs.interrupted.id: "interrupted",
    }
    assert by_id[runs.paused.id]["status_detail"] == "approve_plan"
    assert "llm_unreachable" in by_id[runs.model_error.id]["status_detail"]
    assert by_id[runs.interrupted.id]["status_detail"] == "interrupted in planner; next: planner"
    for run, success in ((runs.good, 1.0), (runs.broken, 0.0)):
        record = by_id[run.id]
        state = runs.metrics(run)["state"]
        assert record["task_success"] == success == state["evaluations"][-1]["task_success_rate"]
        assert record["score"] == pytest.approx(state["evaluations"][-1]["score"])
        assert record["env_steps_by_part"] == state["env_steps"]
        assert record["env_steps"] == sum(state["env_steps"].values())
        model_seconds = sum(u["seconds"] for u in state["usage"].values())
        assert record["model_seconds"] == pytest.approx(model_seconds)
        assert record["evaluations"] == 1 and record["source"] == "checkpoint"
        # From the first to the last checkpoint: within the command's own time.
        assert record["times_from"] == "checkpoints"
        assert 0 < record["wall_seconds"] <= run.seconds
        assert record["models"]["planner"] == "scripted:planner"
        assert record["models"]["coder"] == "scripted:coder"
        assert record["plugins"]["critic"] == "rules"
    # The good code took env steps; the broken code failed before its first one.
    assert by_id[runs.good.id]["env_steps"] > 0
    assert by_id[runs.broken.id]["env_steps"] == 0
    for run in (runs.paused, runs.model_error, runs.interrupted):
        assert by_id[run.id]["task_success"] is None and by_id[run.id]["evaluations"] == 0
    assert by_id[runs.paused.id]["env_steps"] == 0
    assert list(by_id[runs.good.id]) == list(by_id[runs.model_error.id])  # stable keys


def test_table_shows_each_run_with_its_status(
    runs: Runs, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "320")  # one line per run, nothing folded
    assert _command("--runs-dir", str(runs.runs_dir)) == 0
    lines = capsys.readouterr().out.splitlines()

    def line(run: Run) -> str:
        (found,) = [x for x in lines if run.id in x]
        return found

    assert lines.index(line(runs.model_error)) < lines.index(line(runs.good))
    good, broken = line(runs.good), line(runs.broken)
    for text in (good, broken):
        assert TASK in text and "finished" in text
        assert "scripted:planner (planner); scripted:coder (coder); critic: rules" in text
    assert " 100% " in good and " 33.33 " in good
    assert " 0% " in broken and " 0.00 " in broken
    assert "paused for review (approve_plan)" in line(runs.paused)
    assert "stopped: model error (llm_unreachable" in line(runs.model_error)
    assert "running or interrupted (interrupted in planner" in line(runs.interrupted)


def test_compare_shows_the_code_diff_and_success_per_sub_action(
    runs: Runs, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert _command("compare", runs.good.id, runs.broken.id, "--runs-dir", str(runs.runs_dir)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    assert f"--- {runs.good.id}/get_key.py" in lines
    assert f"+++ {runs.broken.id}/get_key.py" in lines
    assert '-        if api.count("key") >= 1:' in lines
    assert '+    while api.count("key") < keys_needed:' in lines
    assert "get_key (A v1, B v1): differs" in out
    (step,) = [x for x in lines if "get_key" in x and "achievement collect_key" in x]
    cells = [c.strip() for c in step.split("│")[1:-1]]
    check = "achievement collect_key"
    assert cells == ["get_key", "code", check, "100%", "code", check, "0%"]
    (success,) = [x for x in lines if "task success" in x]
    assert [c.strip() for c in success.split("│")[2:4]] == ["100%", "0%"]
    (planner,) = [x for x in lines if x.startswith("│ planner")]
    assert [c.strip() for c in planner.split("│")[2:3]] == ["1"]


def test_compare_json_holds_plan_diff_and_usage(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    # A unique start of an id names the run.
    result = _json(
        capsys, "compare", runs.good.id, runs.broken.id[:-2], "--runs-dir", str(runs.runs_dir)
    )

    assert result["a"]["id"] == runs.good.id and result["b"]["id"] == runs.broken.id
    assert result["a"]["task_success"] == 1.0 and result["b"]["task_success"] == 0.0
    (step,) = result["plan"]
    assert step["id"] == "get_key"
    assert (step["a"]["method"], step["a"]["success"]) == ("code", 1.0)
    assert (step["b"]["method"], step["b"]["success"]) == ("code", 0.0)
    assert step["a"]["predicate"] == "achievement collect_key"
    (action,) = result["code_actions"]
    assert action["name"] == "get_key" and not action["same"]
    assert action["a"]["found"] and action["b"]["found"]
    diff = action["diff"].splitlines()
    assert '+    while api.count("key") < keys_needed:' in diff
    assert "-            api.explore(10)" in diff
    for side, run in (("a", runs.good), ("b", runs.broken)):
        usage = runs.metrics(run)["state"]["usage"]
        assert result["usage"][side] == usage
        assert set(usage) == {"planner", "coder"}


def test_compare_of_a_run_with_itself_has_no_diff(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _json(capsys, "compare", runs.good.id, runs.good.id, "--runs-dir", str(runs.runs_dir))
    (action,) = result["code_actions"]
    assert action["same"] and action["diff"] == ""


def test_moved_runs_are_read_where_they_lie(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runs directory moved: its files still name the old paths, which are gone."""
    moved = tmp_path / "elsewhere"
    hidden = runs.runs_dir.with_name("hidden")
    good_steps = sum(runs.metrics(runs.good)["state"]["env_steps"].values())
    shutil.copytree(runs.runs_dir, moved)
    runs.runs_dir.rename(hidden)
    try:
        result = _json(capsys, "compare", runs.good.id, runs.broken.id, "--runs-dir", str(moved))
        (action,) = result["code_actions"]
        assert action["a"]["path"] == str(moved / runs.good.id / "library/code/get_key.py")
        assert '+    while api.count("key") < keys_needed:' in action["diff"].splitlines()

        # Without the checkpoints: finished runs from metrics.json, the others have nothing.
        (moved / "checkpoints.sqlite").unlink()
        by_id = {r["id"]: r for r in _json(capsys, "--runs-dir", str(moved))}
        assert set(by_id) == {
            r.id for r in (runs.good, runs.broken, runs.paused, runs.model_error, runs.interrupted)
        }
        good = by_id[runs.good.id]
        assert (good["status"], good["source"], good["task_success"]) == (
            "finished",
            "metrics.json",
            1.0,
        )
        assert good["env_steps"] == good_steps > 0
        assert by_id[runs.paused.id]["status"] == "no_checkpoint"
        assert by_id[runs.paused.id]["task"] is None
    finally:
        hidden.rename(runs.runs_dir)


def test_unknown_run_is_a_one_line_error_with_exit_code_2(
    runs: Runs, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code_ = _command("compare", runs.good.id, "no-such-run", "--runs-dir", str(runs.runs_dir))
    err = capsys.readouterr().err
    assert code_ == 2
    assert f"error: no run 'no-such-run' under {runs.runs_dir}" in err
    # One line besides the log lines (JSON, off a terminal).
    assert len([x for x in err.splitlines() if not x.startswith("{")]) == 1

    # The start shared by every id of the module names no single run.
    assert _command("compare", runs.good.id, "2", "--runs-dir", str(runs.runs_dir)) == 2
    assert "is ambiguous" in capsys.readouterr().err

    assert _command("--runs-dir", str(tmp_path / "missing")) == 2
    assert "no runs directory" in capsys.readouterr().err
    missing = str(tmp_path / "none.sqlite")
    assert _command("--runs-dir", str(runs.runs_dir), "--checkpointer", missing) == 2
    assert f"no checkpoint file {missing!r}" in capsys.readouterr().err


def test_resuming_a_finished_run_ends_as_the_run_did(runs: Runs) -> None:
    # A run killed after its last checkpoint is resumed by a command that finds it done: the
    # exit code still says whether it reached the critic's bar (0) or not (6).
    assert (runs.good.exit_code, runs.broken.exit_code) == (0, 6)
    for run in (runs.good, runs.broken):
        flags = ["--resume", run.id, "--runs-dir", str(runs.runs_dir)]
        with scripted_backend("scripted") as model:  # asked nothing: the run is done
            assert main(["run", *flags]) == run.exit_code
            assert model.prompts == []
        assert run.exit_code == finished_exit_code(runs.runs_dir / run.id)
