"""`rlgpt bench --quick` end to end: throughput and learning (a), (b), (r) on Crafter and SB3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlgpt.actions.library import ActionLibrary
from rlgpt.bench.baseline_library import ACTIONS
from rlgpt.bench.cli import run_bench
from rlgpt.bench.score import ACHIEVEMENTS
from tests.helpers import bench_args

# A scripted code action written for this test; every table must name it a scripted baseline.
SCRIPTED_ACTION = """
def run(api):
    if api.seen("tree") and api.move_to("tree", max_steps=30):
        return api.do()
    return api.explore(10)
"""


@pytest.mark.integration
def test_quick_bench_writes_results(tmp_path: Path) -> None:
    library = tmp_path / "scripted_library"
    ActionLibrary(library).add_code("gather_tree", SCRIPTED_ACTION, max_steps=60)
    out = tmp_path / "results"
    args = bench_args(
        "--quick", "--seeds", "0", "--library", str(library), "--out", str(out),
        "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert run_bench(args) == 0

    throughput = json.loads((out / "throughput_quick.json").read_text())
    for key in ("config", "versions", "machine", "raw", "measurements", "goals"):
        assert key in throughput
    # A raw probe before the first part, between every two and after the last (10 parts).
    probes = [p["steps_per_second"] for p in throughput["probes"]]
    assert len(probes) == 11 and all(p > 0 for p in probes)
    assert throughput["raw_no_render"]["median"] == pytest.approx(float(np.median(probes)))
    assert throughput["raw_no_render"]["min"] == min(probes)
    median = float(np.median(probes))
    rows = {r["name"]: r for r in throughput["measurements"]}
    assert all(r["value"] > 0 for r in rows.values())
    for row in rows.values():
        if row["unit"] == "steps/s":
            assert row["ratio"] == pytest.approx(row["value"] / median), row["name"]
    trained = [r for r in rows.values() if "training" in r["name"]]
    assert len(trained) == 4  # MLP with 1 and 8 envs, CNN on pixels with 8 on 2 backends
    pixel_rows = [r["name"] for r in trained if "64x64 RGB" in r["name"]]
    assert [n.split("n_envs=8, ")[1] for n in pixel_rows] == [
        "compiled Crafter, inside learn()",
        "Python envs, 2 env processes, inside learn()",
    ]
    kinds = [p["vec_env"] for p in throughput["raw"]["ppo"].values()]
    assert kinds == ["batched", "batched", "batched", "sharded"]
    compiled = [r for r in rows.values() if r["name"].startswith("compiled Crafter")]
    assert len(compiled) == 2
    for row in trained:
        # The whole job includes set-up and saving, so it is slower than learn() alone.
        assert 0 < row["job_steps_per_second"] <= row["value"]
        assert row["job_ratio"] == pytest.approx(row["job_steps_per_second"] / median)
    code_runs = list(throughput["raw"]["ppo_code"].values())
    assert [(p["vec_env"], p["algo"]) for p in code_runs] == [("subproc", "maskable_ppo")] * 2
    # Both backends (compiled, Python) played the same episodes with the same code actions.
    assert len({(p["episodes"], p["agent_steps"]) for p in code_runs}) == 1
    assert code_runs[0]["agent_steps"] < code_runs[0]["env_steps"]
    assert sum("scripted-baseline code actions" in name for name in rows) == 2
    assert "second core" in throughput["process_layout"]
    assert throughput["raw"]["code_action"]["env_steps"] >= 100
    assert (out / "throughput_quick.png").stat().st_size > 1000
    markdown = (out / "throughput_quick.md").read_text()
    assert "median of 11 raw crafter.Env probes" in markdown
    for run in [*throughput["raw"]["ppo"].values(), *code_runs]:
        phases = run["phase_seconds"]
        assert set(phases) == {"env", "policy", "update", "other"} and phases["env"] > 0
        # The split covers the job: its parts add up to the job's wall time.
        assert sum(phases.values()) == pytest.approx(run["wall_time"], rel=0.05, abs=0.05)
    assert "| training run | env | policy | update |" in markdown

    learning = json.loads((out / "learning_quick.json").read_text())
    assert learning["config"]["seeds"] == [0]
    assert learning["config"]["privileged"] is False
    assert "scripted baseline" in learning["config"]["library_origin"]
    methods = {m["key"]: m for m in learning["methods"]}
    assert sorted(methods) == ["a", "b", "r"]
    budget = learning["config"]["budget"]
    for key, method in methods.items():
        (run,) = method["runs"]
        # Every env step counts, code-action steps included; an option may end past the budget.
        assert budget <= run["env_steps"] <= budget + 300 + 256, key
        assert run["episodes"] == len(run["episode_results"]) >= 1, key
        assert set(run["achievements"]) == set(ACHIEVEMENTS)
        assert 0.0 <= run["score"] <= 100.0
        for episode in run["episode_results"]:
            assert set(episode["achievements"]) <= set(ACHIEVEMENTS)
    assert methods["b"]["runs"][0]["action_names"] == ["gather_tree"]
    # Calls of the code action take several env steps per agent step.
    assert methods["r"]["runs"][0]["agent_steps"] < methods["r"]["runs"][0]["env_steps"]
    assert "scripted baseline" in methods["r"]["label"]
    # The standard protocol: a and b see crafter's image; r has no policy at all.
    assert methods["a"]["observation"] == methods["b"]["observation"] == "pixels"
    assert methods["r"]["observation"].startswith("none")
    assert methods["a"]["runs"][0]["algo"] == methods["b"]["runs"][0]["algo"]
    for key in ("a", "b"):  # the PPO runs say where their time went
        assert methods[key]["runs"][0]["phase_seconds"]["env"] > 0, key
    assert methods["a"]["runs"][0]["env_seeds"] == "0+"
    assert methods["a"]["env_steps_used"] == [methods["a"]["runs"][0]["env_steps"]]

    table = (out / "learning_quick.md").read_text()
    pixel_part = table.split("## Without a trained policy")[0]
    assert "| Human experts | the game screen | 50.5 |" in pixel_part
    assert "| PPO, primitives only | 64x64 RGB (crafter's image), CNN |" in pixel_part
    assert "code actions alone" not in pixel_part
    assert "scripted baseline" in table
    assert "privileged full-map mode: not used" in table
    assert (out / "learning_quick_scores.png").stat().st_size > 1000
    assert (out / "learning_quick_achievements.png").stat().st_size > 1000


def test_learning_suite_requires_a_library_for_code_methods(tmp_path: Path) -> None:
    args = bench_args(
        "learning", "--quick", "--methods", "r", "--out", str(tmp_path),
        "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert run_bench(args) == 2
    assert not (tmp_path / "learning_quick.json").exists()


@pytest.mark.integration
def test_scripted_baseline_runs_merge_into_one_table(tmp_path: Path) -> None:
    for seed in ("0", "1"):
        args = bench_args(
            "learning", "--quick", "--library", "scripted-baseline", "--methods", "r",
            "--seeds", seed, "--tag", f"r{seed}", "--out", str(tmp_path),
            "--runs-dir", str(tmp_path / "runs"),
        )  # fmt: skip
        assert run_bench(args) == 0
    files = [str(tmp_path / "learning_r0.json"), str(tmp_path / "learning_r1.json")]
    assert run_bench(bench_args("--merge", *files, "--tag", "both", "--out", str(tmp_path))) == 0

    merged = json.loads((tmp_path / "learning_both.json").read_text())
    assert merged["config"]["seeds"] == [0, 1]
    assert "rlgpt/bench/baseline_library.py" in merged["config"]["library_origin"]
    assert sorted(merged["config"]["library_sources"]) == sorted(ACTIONS)
    (method,) = merged["methods"]
    assert [r["seed"] for r in method["runs"]] == [0, 1]
    assert "scripted baseline" in method["label"]
    assert "**" in (tmp_path / "learning_both.md").read_text()


@pytest.mark.faults
@pytest.mark.integration
def test_killed_learning_suite_continues_where_it_stopped(tmp_path: Path) -> None:
    """SIGKILL during a run; the same command keeps its checkpointed episodes and goes on."""
    runs, out = tmp_path / "runs", tmp_path / "results"
    cmd = [
        sys.executable, "-m", "rlgpt.cli", "bench", "learning", "--budget", "6000",
        "--episode-length", "300", "--seeds", "3", "--observation", "symbolic",
        "--runs-dir", str(runs), "--out", str(out), "--tag", "killed",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = runs / "a_seed3" / "resume.json"
    deadline = time.monotonic() + 300
    while not saved.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    first.kill()
    first.wait(30)
    assert saved.exists(), "no checkpoint was written before the kill"
    checkpoint = json.loads(saved.read_text())
    assert 0 < checkpoint["env_steps"] < 6000
    assert not (runs / "a_seed3" / "summary.json").exists()

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (method,) = json.loads((out / "learning_killed.json").read_text())["methods"]
    (run,) = method["runs"]
    assert run["resumes"] == 1 and len(run["git_attempts"]) == 2
    # The time of both attempts is known, so the run's rate is too.
    assert run["wall_time_complete"] and run["wall_time"] > checkpoint["wall_time"] > 0
    assert 6000 <= run["env_steps"] < 6100
    # The episodes finished before the kill are kept as they were.
    kept = run["episode_results"][: len(checkpoint["episodes"])]
    assert [e["env_steps_total"] for e in kept] == [e["env_steps"] for e in checkpoint["episodes"]]
    assert "resumed 1x" in (out / "learning_killed.md").read_text()
    # Run seed 3 trains on env seeds 30000 + i; the resumed attempt moves on to unused ones.
    assert run["env_seeds"] == "30000+"
