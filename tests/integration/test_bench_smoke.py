"""`rlgpt bench --quick` end to end: throughput and learning (a)-(c) on real Crafter and SB3."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from rlgpt.actions.library import ActionLibrary
from rlgpt.bench.baseline_library import ACTIONS
from rlgpt.bench.cli import add_bench_arguments, run_bench
from rlgpt.bench.score import ACHIEVEMENTS

# A scripted code action written for this test; every table must name it a scripted baseline.
SCRIPTED_ACTION = """
def run(api):
    if api.seen("tree") and api.move_to("tree", max_steps=30):
        return api.do()
    return api.explore(10)
"""


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.integration
def test_quick_bench_writes_results(tmp_path: Path) -> None:
    library = tmp_path / "scripted_library"
    ActionLibrary(library).add_code("gather_tree", SCRIPTED_ACTION, max_steps=60)
    out = tmp_path / "results"
    args = _args("--quick", "--seeds", "0", "--library", str(library), "--out", str(out))
    assert run_bench(args) == 0

    throughput = json.loads((out / "throughput_quick.json").read_text())
    for key in ("config", "versions", "machine", "raw", "measurements", "goals"):
        assert key in throughput
    rows = {r["name"]: r for r in throughput["measurements"]}
    assert rows["crafter.Env step (no render)"]["ratio"] == pytest.approx(1.0)
    assert all(r["value"] > 0 for r in rows.values())
    assert throughput["raw"]["code_action"]["env_steps"] >= 100
    assert (out / "throughput_quick.png").stat().st_size > 1000
    assert "ratio to raw no-render" in (out / "throughput_quick.md").read_text()

    learning = json.loads((out / "learning_quick.json").read_text())
    assert learning["config"]["seeds"] == [0]
    assert learning["config"]["privileged"] is False
    assert "scripted baseline" in learning["config"]["library_origin"]
    methods = {m["key"]: m for m in learning["methods"]}
    assert sorted(methods) == ["a", "b", "c"]
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
    assert methods["c"]["runs"][0]["agent_steps"] < methods["c"]["runs"][0]["env_steps"]
    assert "scripted baseline" in methods["c"]["label"]

    table = (out / "learning_quick.md").read_text()
    assert "| Human experts | 50.5 |" in table
    assert "scripted baseline" in table
    assert "privileged full-map mode: not used" in table
    assert (out / "learning_quick_scores.png").stat().st_size > 1000
    assert (out / "learning_quick_achievements.png").stat().st_size > 1000


def test_learning_suite_requires_a_library_for_code_methods(tmp_path: Path) -> None:
    args = _args("learning", "--quick", "--methods", "c", "--out", str(tmp_path))
    assert run_bench(args) == 2
    assert not (tmp_path / "learning_quick.json").exists()


@pytest.mark.integration
def test_scripted_baseline_runs_merge_into_one_table(tmp_path: Path) -> None:
    for seed in ("0", "1"):
        args = _args(
            "learning", "--quick", "--library", "scripted-baseline", "--methods", "c",
            "--seeds", seed, "--tag", f"c{seed}", "--out", str(tmp_path),
        )  # fmt: skip
        assert run_bench(args) == 0
    files = [str(tmp_path / "learning_c0.json"), str(tmp_path / "learning_c1.json")]
    assert run_bench(_args("--merge", *files, "--tag", "both", "--out", str(tmp_path))) == 0

    merged = json.loads((tmp_path / "learning_both.json").read_text())
    assert merged["config"]["seeds"] == [0, 1]
    assert "rlgpt/bench/baseline_library.py" in merged["config"]["library_origin"]
    assert sorted(merged["config"]["library_sources"]) == sorted(ACTIONS)
    (method,) = merged["methods"]
    assert [r["seed"] for r in method["runs"]] == [0, 1]
    assert "scripted baseline" in method["label"]
    assert "**" in (tmp_path / "learning_both.md").read_text()
