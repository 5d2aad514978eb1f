"""The peer suite's arithmetic, report and its error without the optional extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from rlgpt.bench import peer
from rlgpt.bench.cli import main as bench_main
from rlgpt.bench.cli import render_markdown
from rlgpt.bench.peer import PeerSuiteConfig, peer_updates, summarize


def _row(round_: int, name: str, rate: float, job: float | None = None) -> dict[str, Any]:
    kind = "rlgpt" if name.startswith("rlgpt") else "peer"
    row = {"round": round_, "name": name, "kind": kind, "steps_per_second": rate}
    if kind == "peer":
        row["compile_seconds"] = 10.0 + round_
    else:
        row["job_steps_per_second"] = job
    return row


ROWS = [
    _row(0, "peer 8", 1_000.0),
    _row(0, "peer 256", 8_000.0),
    _row(0, "rlgpt 8", 4_000.0, 3_600.0),
    _row(1, "peer 8", 1_200.0),
    _row(1, "peer 256", 10_000.0),
    _row(1, "rlgpt 8", 6_000.0, 5_000.0),
    _row(2, "peer 8", 900.0),
    _row(2, "peer 256", 5_000.0),
    _row(2, "rlgpt 8", 5_500.0, 5_000.0),
    _row(0, "rlgpt 64", 2_000.0, 1_900.0),
    _row(1, "rlgpt 64", 2_000.0, 1_900.0),
]


def test_ratio_is_taken_per_round_against_the_best_peer_configuration() -> None:
    result = summarize(ROWS)
    assert result["best_peer"] == "peer 256" and result["best_rlgpt"] == "rlgpt 8"
    # Per round: 4000/8000, 6000/10000, 5500/5000.
    assert result["ratio"]["per_round"] == pytest.approx([0.5, 0.6, 1.1])
    assert result["ratio"]["median"] == pytest.approx(0.6)
    assert (result["ratio"]["min"], result["ratio"]["max"]) == pytest.approx((0.5, 1.1))
    assert result["job_ratio"]["median"] == pytest.approx(0.5)
    assert result["goal_met"] is False
    assert result["summary"]["peer 256"]["median"] == 8_000.0
    assert result["summary"]["peer 256"]["compile_seconds"]["max"] == 12.0
    assert result["summary"]["rlgpt 8"]["job"]["min"] == 3_600.0
    # Every rlgpt configuration against the best peer, over the rounds it ran in.
    assert result["ratios"]["rlgpt 8"]["median"] == pytest.approx(0.6)
    assert result["ratios"]["rlgpt 64"]["n"] == 2
    assert result["ratios"]["rlgpt 64"]["max"] == pytest.approx(0.25)
    # Without both sides there is no ratio to give.
    assert "ratio" not in summarize([r for r in ROWS if r["kind"] == "peer"])


def test_report_names_the_ratio_the_goal_and_the_peer_as_our_own_code() -> None:
    result = {
        "suite": "peer",
        "config": {"n_steps": 256, "rounds": 3, "steps": 131_072},
        "command": ["rlgpt", "bench", "peer"],
        **summarize(ROWS),
    }
    text = render_markdown(result)
    assert "this benchmark's own JAX code" in text
    assert "once per round, 3 of 3 round(s) measured" in text
    one_round = {**result, **summarize([r for r in ROWS if r["round"] == 0])}
    assert "1 of 3 round(s) measured" in render_markdown(one_round)
    assert "| peer 256 | 3 | 8000 | 5000-10000 | 11.0 |  |" in text
    assert "median **0.60**, range 0.50-1.10 (n=3); whole job 0.50" in text
    assert "Goal >= 1.0: not met" in text
    assert "| rlgpt 64 | 0.23 | 0.20-0.25 | 2 |" in text


def test_peer_updates_cover_the_asked_steps_in_whole_updates() -> None:
    config = PeerSuiteConfig(n_steps=256, steps=131_072)
    assert peer_updates(config, 256) == 2
    assert peer_updates(config, 8) == 64
    assert peer_updates(PeerSuiteConfig(n_steps=256, steps=1), 256) == 1
    with pytest.raises(ValueError, match="resets"):
        PeerSuiteConfig(resets=("instant",)).validate()
    with pytest.raises(ValueError, match="rlgpt_env_processes"):
        PeerSuiteConfig(rlgpt_env_processes=(3,)).validate()


def test_rlgpt_rows_name_their_backend_and_env_processes() -> None:
    runs = peer.rlgpt_runs(PeerSuiteConfig(rlgpt_n_envs=(8, 256), python_n_envs=(8,)))
    assert [peer.rlgpt_name(run) for run in runs] == [
        "rlgpt PPO-MLP, 8 envs x 256 steps, compiled Crafter step",
        "rlgpt PPO-MLP, 256 envs x 256 steps, compiled Crafter step",
        "rlgpt PPO-MLP, 8 envs x 256 steps, Python Crafter envs, 1 env process",
        "rlgpt PPO-MLP, 8 envs x 256 steps, Python Crafter envs, 2 env processes",
    ]
    assert peer.rlgpt_runs(PeerSuiteConfig(rlgpt_n_envs=(64,), python_n_envs=())) == [
        ("batched", 64, 1, 256)
    ]
    with pytest.raises(ValueError, match=r"1\.\.256"):
        PeerSuiteConfig(rlgpt_n_envs=(), python_n_envs=()).validate()


def test_a_fixed_rollout_sets_each_runs_steps_per_env() -> None:
    config = PeerSuiteConfig(rlgpt_n_envs=(8, 64, 256), python_n_envs=(8,), rlgpt_rollout=2048)
    config.validate()
    assert [run[3] for run in peer.rlgpt_runs(config)] == [256, 32, 8, 256, 256]
    with pytest.raises(ValueError, match="at least 8 steps"):
        PeerSuiteConfig(rlgpt_n_envs=(256,), python_n_envs=(), rlgpt_rollout=1024).validate()
    with pytest.raises(ValueError, match="multiple"):
        PeerSuiteConfig(rlgpt_n_envs=(48,), python_n_envs=(), rlgpt_rollout=2048).validate()


def test_bench_peer_without_the_extra_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        peer.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "craftax" else real(name, *a),
    )
    # Without the extra every module is missing; here at least craftax is.
    with pytest.raises(ValueError, match=r"needs (\w+, )*craftax: install the optional extra"):
        peer.require_peer()
    assert bench_main(["peer", "--quick", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())
