"""`rlgpt code check`: a code action file through the coder's check, on real Crafter episodes.

The JSON and human runs go through the real command in a subprocess (stdout must hold the
one JSON object and nothing else); the refusals of bad input run `main` in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rlgpt.cli import main
from tests.helpers import GOOD_CODE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TASK = "crafter:collect_wood"
#: Passes the static check, then raises on line 3 of every call.
RAISES = 'def run(api):\n    api.noop()\n    return {}["x"]\n'


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`rlgpt code check ...` in a subprocess, as a user runs it."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-m", "rlgpt.cli", "code", "check", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def _write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    # json.loads of the whole stdout: anything besides the one object fails here.
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_good_code_action_passes_on_every_seed(tmp_path: Path) -> None:
    done = _cli(str(_write(tmp_path, "get_wood", GOOD_CODE)), "--task", TASK, "--json")

    assert done.returncode == 0, done.stderr[-2000:]
    result = _json(done)
    assert result["success_rate"] == 1.0
    assert [r["seed"] for r in result["results"]] == [0, 1, 2]
    assert all(r["success"] and r["steps"] > 0 for r in result["results"])
    assert result["errors"] == []
    assert result["task"] == TASK and result["seeds"] == [0, 1, 2]
    assert result["name"] == "get_wood"
    assert result["predicate"] == {"kind": "achievement", "name": "collect_wood", "at_least": 1}


def test_raising_code_action_reports_a_runtime_error_with_its_line(tmp_path: Path) -> None:
    done = _cli(str(_write(tmp_path, "raises", RAISES)), "--task", TASK, "--seeds", "0,1", "--json")

    assert done.returncode == 1, done.stderr[-2000:]
    result = _json(done)
    assert result["success_rate"] == 0.0 and len(result["results"]) == 2
    assert [(e["kind"], e["line"], e["seed"]) for e in result["errors"]] == [
        ("runtime", 3, 0),
        ("runtime", 3, 1),
    ]
    assert "KeyError" in result["errors"][0]["message"]


def test_human_output_names_each_seed_and_the_success_rate(tmp_path: Path) -> None:
    done = _cli(str(_write(tmp_path, "get_wood", GOOD_CODE)), "--task", TASK, "--seeds", "0,1,2")

    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for seed in (0, 1, 2):
        assert any(line.strip().startswith(f"seed {seed}: ok") for line in lines), done.stdout
    assert "success rate 100% (3/3 seeds)" in done.stdout


def test_human_output_lists_the_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["code", "check", str(_write(tmp_path, "raises", RAISES)), "--task", TASK]) == 1

    out = capsys.readouterr().out
    assert "seed 2: FAIL" in out
    assert "runtime (line 3, step 1, seed 0): KeyError: 'x'" in out
    assert "success rate 0% (0/3 seeds)" in out


def test_import_is_rejected_by_the_static_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _write(tmp_path, "imports", "def run(api):\n    import os\n    return True\n")

    assert main(["code", "check", str(code), "--task", TASK, "--json"]) == 1

    result = json.loads(capsys.readouterr().out)
    (error,) = result["errors"]
    assert (error["kind"], error["line"]) == ("static", 2)
    assert result["results"] == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--task", "crafter:fly_to_moon"], "crafter:fly_to_moon"),
        (["--task", "nowhere:collect_wood"], "nowhere:collect_wood"),
        (["--task", TASK, "--seeds", "0,x"], "--seeds"),
        (["--task", TASK, "--predicate", "inventory:wod"], "unknown inventory 'wod'"),
        (["--task", TASK, "--predicate", "wood"], "malformed --predicate"),
        (["--task", TASK, "--prelude", "get_wood"], "--prelude needs --library"),
        (["--task", TASK, "--max-steps", "0"], "code_action_max_steps"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code = _write(tmp_path, "get_wood", GOOD_CODE)

    assert main(["code", "check", str(code), *flags, "--json"]) == 2

    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_unknown_task_points_at_rlgpt_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _write(tmp_path, "get_wood", GOOD_CODE)

    assert main(["code", "check", str(code), "--task", "crafter:fly_to_moon"]) == 2

    assert "`rlgpt tasks`" in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path: Path) -> None:
    done = _cli(str(tmp_path / "absent.py"), "--task", TASK)

    assert done.returncode == 2
    assert "absent.py" in done.stderr and done.stdout == ""
