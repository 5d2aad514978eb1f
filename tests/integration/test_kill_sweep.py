"""SIGKILL of the CLI at seeded random moments of a run; every resume finishes whole.

Slow (a real model and training per kill): `make test-slow`. RLGPT_KILLS sets how many
kill moments are tried (default 20).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rlgpt.exit_codes import ExitCode
from rlgpt.llm.local_server import URL_ENV
from tests.helpers import finished_exit_code, save_numbers

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

KILLS = int(os.environ.get("RLGPT_KILLS", "20"))
#: Seconds the sweep may take: a kill cycle (plan, resume, kill, resume to the end) took
#: 60-90 s here, so the suite-wide per-test limit would cut the sweep short.
SWEEP_TIMEOUT = 600 + 240 * KILLS
RL_BUDGET = 3000
SETTINGS = {
    "planner-model": "local:smollm2", "coder-model": "local:smollm2", "critic": "rules",
    "plan-revisions": 0, "code-repairs": 0, "max-inner-loops": 0, "max-outer-loops": 0,
    "eval-episodes": 2, "code-check-episodes": 2, "llm-max-tokens": 1200,
    "subaction-max-steps": 150, "code-action-max-steps": 150,
    "rl-timesteps": RL_BUDGET, "rl-checkpoint-every": 500, "rl-n-steps": 64,
}  # fmt: skip
#: The plan a reviewer sets: one code step and one RL step, so every node runs.
PLAN = {
    "sub_actions": [
        {"id": "wood", "description": "collect wood", "method": "code",
         "predicate": {"kind": "achievement", "name": "collect_wood"}},
        {"id": "table", "description": "place a table", "method": "rl",
         "predicate": {"kind": "achievement", "name": "place_table"}},
    ]
}  # fmt: skip
ANSWER = json.dumps({"action": "edit", "plan": PLAN})


def _cli(runs: Path, *args: str) -> list[str]:
    flags = [f"--{k}={v}" for k, v in SETTINGS.items()]
    return [sys.executable, "-m", "rlgpt.cli", "run", "--runs-dir", str(runs), *args, *flags]


def _finish(runs: Path, run_id: str, env: dict[str, str]) -> int:
    """Resume until the run ends (answering the plan review whenever it is pending)."""
    for _ in range(6):
        done = subprocess.run(
            _cli(runs, "--resume", run_id, "--answer", ANSWER),
            env=env, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        if done.returncode != 3:
            return done.returncode
    raise AssertionError("the run kept pausing for review")


def _check_whole(run_dir: Path) -> dict[str, Any]:
    """Nothing torn: the manifest names files that exist, no temporary file is left, and no
    training job went past its budget."""
    manifest = json.loads((run_dir / "library" / "library.json").read_text())
    for entry in manifest["actions"].values():
        assert (run_dir / "library" / entry["path"]).exists(), entry
    assert not list(run_dir.rglob("*.tmp")), list(run_dir.rglob("*.tmp"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for job in metrics["state"].get("rl_runs", []):
        assert job["env_steps"] + job.get("prelude_env_steps", 0) < RL_BUDGET + 200
    return metrics


@pytest.mark.timeout(SWEEP_TIMEOUT)
def test_runs_killed_at_random_moments_resume_whole(local_server: Any, tmp_path: Path) -> None:
    env = {**os.environ, URL_ENV: os.environ[URL_ENV]}
    rng = random.Random(7)
    outcomes = []
    for kill in range(KILLS):
        runs = tmp_path / f"kill{kill}"
        first = subprocess.run(
            _cli(runs, "--task", "crafter:collect_wood", "--approve-plan", "--no-gif"),
            env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert first.returncode == 3, first.stdout + first.stderr
        (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
        moment = rng.uniform(0.5, 60.0)
        proc = subprocess.Popen(
            _cli(runs, "--resume", run_dir.name, "--answer", ANSWER),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            proc.wait(timeout=moment)
            ended_first = True  # the run ended before the kill moment
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            ended_first = False
        checkpoints = sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("rl/*/resume.json"))
        code = proc.returncode
        if not ended_first or code == ExitCode.REVIEW:
            code = _finish(runs, run_dir.name, env)
        assert code == finished_exit_code(run_dir), (
            f"kill {kill} at {moment:.1f}s: the resumed run ended with {code}"
        )
        metrics = _check_whole(run_dir)
        outcomes.append(
            {"kill": kill, "seconds": round(moment, 1), "ended_before_kill": ended_first,
             "rl_checkpoints_at_kill": checkpoints,
             "rl_jobs": len(metrics["state"].get("rl_runs", [])),
             "evaluations": len(metrics["state"].get("evaluations", []))}
        )  # fmt: skip
        save_numbers("kill_sweep", {"kills": outcomes})  # kept as it grows
    assert len(outcomes) == KILLS
