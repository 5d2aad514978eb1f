"""The run report's figures, read from the matplotlib objects the report saves: axis scales,
labels, bar heights, and the words a figure says when there is nothing to draw."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from rlgpt import report
from rlgpt.envs.crafter.constants import ACHIEVEMENTS
from rlgpt.envs.crafter.published import HUMAN_DIAMOND_RATE
from rlgpt.report_plots import (
    LOG_CEILING,
    LOG_FLOOR,
    ZERO_TEXT,
    Anchor,
    Curve,
    achievement_figure,
    success_figure,
    training_figure,
)

RATES = {name: 0.0 for name in ACHIEVEMENTS} | {
    "collect_wood": 1.0,
    "place_table": 0.5,
    "collect_sapling": 0.1,
}


def _axes(fig: Figure) -> Axes:
    (ax,) = fig.axes
    return ax


def _texts(fig: Figure) -> str:
    """Every text the figure shows outside and inside its axes (titles too), lines joined."""
    texts = [t.get_text() for t in fig.texts]
    texts += [t.get_text() for ax in fig.axes for t in ax.texts]
    return " ".join(" ".join(texts).split())


def _series(ax: Axes, label: str) -> list[Rectangle]:
    """The bars of the series `label`, one per tick."""
    (container,) = [c for c in ax.containers if c.get_label() == label]
    assert isinstance(container, BarContainer)
    return list(container.patches)


def _bars(ax: Axes, label: str) -> dict[str, float]:
    """Height of each drawn bar of the series `label`, by its tick's achievement."""
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    heights = {}
    for name, patch in zip(ticks, _series(ax, label), strict=True):
        if not math.isnan(patch.get_height()):
            heights[name] = patch.get_height()
    return heights


def test_achievements_are_drawn_in_percent_on_a_log_axis_as_in_crafters_paper() -> None:
    fig = achievement_figure(RATES, 10)
    ax = _axes(fig)
    assert ax.get_yscale() == "log"
    assert ax.get_ylim() == pytest.approx((LOG_FLOOR, LOG_CEILING))  # 0.01% .. 100%
    assert "%" in ax.get_ylabel() and "log" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(ACHIEVEMENTS)
    # Only unlocked achievements have a bar (zero has no height on a log axis) ...
    assert _bars(ax, "this run") == {
        "collect_wood": 100.0,
        "place_table": 50.0,
        "collect_sapling": pytest.approx(10.0),
    }
    # ... the others are marked 0 at the bottom of the axis.
    zeros = [t for t in ax.texts if t.get_text() == "0"]
    assert len(zeros) == len(ACHIEVEMENTS) - 3
    assert "10 held-out episodes" in ax.get_title()


def test_published_rates_stand_beside_ours_where_there_are_any() -> None:
    human = Anchor("human experts", {"collect_diamond": 0.12})
    unrelated = Anchor("elsewhere", {"open_door": 0.5})
    ax = _axes(achievement_figure(RATES, 10, [human, unrelated]))
    assert _bars(ax, "human experts") == {"collect_diamond": pytest.approx(12.0)}
    # An anchor with no rate for any of these achievements draws no series at all.
    assert [c.get_label() for c in ax.containers] == ["this run", "human experts"]
    # Side by side: each achievement's anchor bar starts where ours ends.
    pairs = zip(_series(ax, "this run"), _series(ax, "human experts"), strict=True)
    for mine, published in pairs:
        assert published.get_x() == pytest.approx(mine.get_x() + mine.get_width())


def test_crafter_runs_get_the_human_experts_diamond_rate_the_benchmarks_keep() -> None:
    (anchor,) = report.achievement_anchors("crafter")
    assert anchor.rates == {"collect_diamond": HUMAN_DIAMOND_RATE}
    assert report.achievement_anchors("gridworld") == []


@pytest.mark.parametrize("episodes", [1, 10])
def test_a_run_that_unlocked_nothing_says_so_instead_of_an_empty_frame(episodes: int) -> None:
    fig = achievement_figure(dict.fromkeys(ACHIEVEMENTS, 0.0), episodes)
    assert fig.axes == []
    text = _texts(fig)
    assert ZERO_TEXT in text
    assert f"{episodes} held-out episode" in text


def test_training_curves_run_over_env_steps_not_episodes() -> None:
    steps = [30, 80, 200, 260, 400, 450, 600, 700, 710, 900, 1000, 1200]
    success = [0, 0, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1]
    fig = training_figure([Curve("open_door", steps, [float(s) for s in success], 1200)])
    ax = _axes(fig)
    assert "env steps" in ax.get_xlabel()
    (line,) = ax.get_lines()
    assert np.asarray(line.get_xdata()).tolist() == steps
    ys = np.asarray(line.get_ydata()).tolist()
    assert ys[0] == 0.0 and ys[-1] == 100.0  # percent, rolling over a tenth of the episodes
    assert ax.get_ylabel() == "success rate (%)"
    assert ax.xaxis.get_major_formatter()(1200, 0) == "1,200"


def test_training_that_never_succeeded_or_finished_an_episode_says_so() -> None:
    failed = training_figure([Curve("open_door", [60, 120], [0.0, 0.0], 128)])
    assert failed.axes == [] and ZERO_TEXT in _texts(failed)
    assert "2 episodes in 128 env steps" in _texts(failed)
    unfinished = training_figure([Curve("open_door", [], [], 64)])
    assert unfinished.axes == []
    assert "no training episode finished in 64 env steps" in _texts(unfinished)


def test_sub_action_success_all_zero_says_so() -> None:
    ev = {"iteration": 1, "episodes": 4, "subaction_success": {"a": 0.0}, "task_success_rate": 0.0}
    fig = success_figure([ev])
    assert fig.axes == [] and ZERO_TEXT in _texts(fig)
    drawn = success_figure([{**ev, "subaction_success": {"a": 0.5}}])
    ax = _axes(drawn)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "TASK"]
    assert [p.get_height() for p in _series(ax, "iter 1")] == [50.0, 0.0]


def _state(run_dir: Path, achievements: dict[str, float]) -> dict[str, Any]:
    """A finished run's state with one RL job (its curve on disk) and one evaluation."""
    curve = run_dir / "rl" / "job_1" / "policy.curve.json"
    curve.parent.mkdir(parents=True)
    curve.write_text(json.dumps([{"env_steps": 50 * i, "success": i % 2} for i in range(1, 21)]))
    return {
        "task": "crafter:collect_wood",
        "run_id": "r1",
        "run_dir": str(run_dir),
        "rl_runs": [
            {
                "subaction": "wood",
                "algo": "ppo",
                "action_names": [],
                "env_steps": 1000,
                "steps_per_second": 100.0,
                "train_success_rate": 0.5,
                "stopped_early": False,
                "policy_path": str(curve.parent / "policy.zip"),
                "curve_path": str(curve),
                "tensorboard_dir": "",
            }
        ],
        "evaluations": [
            {
                "iteration": 1,
                "episodes": 10,
                "task_success_rate": 0.0,
                "subaction_success": {"wood": 0.0},
                "achievements": achievements,
                "score": 0.0,
                "mean_length": 100.0,
                "failures": [],
            }
        ],
    }


CONTEXT = {
    "env": "crafter",
    "observation": "symbolic",
    "privileged": False,
    "planner": "llm",
    "coder": "llm",
    "rl_trainer": "sb3",
    "critic": "rules",
    "planner_model": "m",
    "coder_model": "m",
    "critic_model": "m",
    "max_inner_loops": 0,
    "max_outer_loops": 0,
}


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """The figures the report saves, by file name (saved as well)."""
    figures: dict[str, Figure] = {}
    real_save = report.save_figure

    def keep(fig: Figure, path: Path) -> Path:
        figures[path.name] = fig
        return real_save(fig, path)

    monkeypatch.setattr(report, "save_figure", keep)
    return figures


def test_the_report_saves_these_figures_and_shows_them(
    tmp_path: Path, saved: dict[str, Figure]
) -> None:
    run_dir = tmp_path / "run"
    path = report.write_report(_state(run_dir, RATES), CONTEXT)

    assert set(saved) == {"training_curves.png", "success_rates.png", "achievements.png"}
    achievements = _axes(saved["achievements.png"])
    assert achievements.get_yscale() == "log"
    assert "human experts (published)" in [c.get_label() for c in achievements.containers]
    assert "env steps" in _axes(saved["training_curves.png"]).get_xlabel()
    assert ZERO_TEXT in _texts(saved["success_rates.png"])  # every sub-action rate was 0
    markdown = path.read_text()
    for name in saved:
        assert f"]({name})" in markdown
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"


def test_the_report_says_when_no_achievement_was_unlocked(
    tmp_path: Path, saved: dict[str, Figure]
) -> None:
    report.write_report(_state(tmp_path / "run", dict.fromkeys(ACHIEVEMENTS, 0.0)), CONTEXT)
    assert saved["achievements.png"].axes == []
    assert ZERO_TEXT in _texts(saved["achievements.png"])
