"""The run report's figures: training curves over env steps, success rates, achievements."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rlgpt.files import atomic_target

#: The success-rate axis of the per-achievement figure, in percent, as in Crafter's paper.
LOG_FLOOR, LOG_CEILING = 0.01, 100.0
ZERO_TEXT = "every success rate is 0%"
OURS_COLOR, ANCHOR_COLORS = "#C44E52", ("#8C8C8C", "#4C72B0", "#55A868", "#8172B2")


@dataclass(frozen=True)
class Curve:
    """One RL job's finished training episodes: env steps at each episode's end, success."""

    label: str
    env_steps: list[int]
    success: list[float]
    trained_env_steps: int = 0


@dataclass(frozen=True)
class Anchor:
    """Published per-achievement success rates (fractions) to set beside a run's."""

    label: str
    rates: Mapping[str, float] = field(default_factory=dict)


def message_figure(text: str, title: str = "") -> Figure:
    """A figure that says in words why there is nothing to draw (never an empty frame)."""
    fig = Figure(figsize=(6.0, 1.8), layout="tight")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.45, textwrap.fill(text, 72), ha="center", va="center", fontsize=10)
    return fig


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _rolling(values: Sequence[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window + 1) : i + 1]
        out.append(sum(part) / len(part))
    return out


def _env_steps_axis(ax: Any) -> None:
    ax.set_xlabel("env steps (training)")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))


def training_figure(curves: Sequence[Curve]) -> Figure:
    """Rolling success rate (%) over env steps, one line per RL job.

    Args:
        curves: The jobs' training episodes (a job that finished none has empty lists).
    """
    episodes = sum(len(c.success) for c in curves)
    steps = sum(c.trained_env_steps for c in curves)
    title = "Training curves"
    if not episodes:
        return message_figure(
            f"no training episode finished in {_count(steps, 'env step')} "
            f"({_count(len(curves), 'RL job')})",
            title,
        )
    if not any(any(c.success) for c in curves):
        return message_figure(
            f"{ZERO_TEXT}: no training episode succeeded ({_count(episodes, 'episode')} "
            f"in {_count(steps, 'env step')}, {_count(len(curves), 'RL job')})",
            title,
        )
    fig = Figure(figsize=(6.0, 3.5), layout="tight")
    ax = fig.add_subplot()
    windows = []
    for curve in curves:
        if not curve.success:
            continue
        # A tenth of the episodes: smooth enough to read, short enough to show change.
        window = max(1, len(curve.success) // 10)
        windows.append(window)
        ys = [100.0 * v for v in _rolling(curve.success, window)]
        ax.plot(curve.env_steps, ys, label=curve.label)
    _env_steps_axis(ax)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(-2, 102)
    spread = f"{min(windows)}" if min(windows) == max(windows) else f"{min(windows)}-{max(windows)}"
    ax.set_title(f"{title} (rolling mean over {spread} episodes)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def success_figure(evaluations: Sequence[Mapping[str, Any]]) -> Figure:
    """Per-sub-action and task success (%) of each evaluation, as grouped bars."""
    title = "Success rates (held-out seeds)"
    if not evaluations:
        return message_figure("no evaluation ran", title)
    labels = [*evaluations[-1]["subaction_success"], "TASK"]
    series = [
        [
            *(float(ev["subaction_success"].get(label, 0.0)) for label in labels[:-1]),
            float(ev["task_success_rate"]),
        ]
        for ev in evaluations
    ]
    if not any(any(values) for values in series):
        episodes = sum(int(ev.get("episodes", 0)) for ev in evaluations)
        return message_figure(
            f"{ZERO_TEXT}: neither the task nor any sub-action succeeded in "
            f"{_count(episodes, 'held-out episode')} ({_count(len(evaluations), 'evaluation')})",
            title,
        )
    fig = Figure(figsize=(6.0, 3.5), layout="tight")
    ax = fig.add_subplot()
    width = 0.8 / len(evaluations)
    for i, (ev, values) in enumerate(zip(evaluations, series, strict=True)):
        ax.bar(
            [x + i * width for x in range(len(labels))],
            [100.0 * v for v in values],
            width,
            label=f"iter {ev['iteration']}",
        )
    ax.set_xticks(
        [x + 0.4 - width / 2 for x in range(len(labels))], labels, rotation=30, fontsize=8
    )
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def achievement_figure(
    rates: Mapping[str, float], episodes: int, anchors: Sequence[Anchor] = ()
) -> Figure:
    """Success rate per achievement (%) on a log axis from 0.01% to 100%, as in Crafter's
    paper, with published rates beside ours where there are any.

    Args:
        rates: The run's rate (fraction of held-out episodes) per achievement, in the env's order.
        episodes: How many held-out episodes the rates are over.
        anchors: Published rates; an anchor without a rate for an achievement draws no bar there.
    """
    title = f"Success rate per achievement (last evaluation, {episodes} held-out episodes)"
    if not rates:
        return message_figure("the environment reported no achievements", title)
    if not any(rates.values()):
        return message_figure(
            f"{ZERO_TEXT}: no achievement was unlocked in {_count(episodes, 'held-out episode')}",
            title,
        )
    names = list(rates)
    shown = [a for a in anchors if any(name in a.rates for name in names)]
    groups = 1 + len(shown)
    width = min(0.8 / groups, 0.5)
    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 2.0), 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_yscale("log")
    xs = list(range(len(names)))
    # A zero rate has no height on a log axis: it draws no bar and is marked `0` instead.
    ours = [100.0 * rates[n] if rates[n] > 0 else math.nan for n in names]
    ax.bar(xs, ours, width, color=OURS_COLOR, label="this run")
    for x, value in zip(xs, ours, strict=True):
        if math.isnan(value):
            ax.text(x, LOG_FLOOR * 1.3, "0", ha="center", va="bottom", fontsize=7)
    for i, anchor in enumerate(shown, 1):
        values = [100.0 * anchor.rates[n] if anchor.rates.get(n) else math.nan for n in names]
        ax.bar(
            [x + i * width for x in xs],
            values,
            width,
            color=ANCHOR_COLORS[(i - 1) % len(ANCHOR_COLORS)],
            label=anchor.label,
        )
    ax.set_xlim(-0.6, len(names) - 0.4 + (groups - 1) * width)
    ax.set_ylim(LOG_FLOOR, LOG_CEILING)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}%"))
    ax.set_ylabel("success rate (%, log scale)")
    ax.set_xticks(
        [x + (groups - 1) * width / 2 for x in xs], names, rotation=60, ha="right", fontsize=7
    )
    ax.set_title(title, fontsize=10)
    # Outside the axes: bars reach up to 100%, where a legend inside would hide them.
    fig.legend(loc="outside lower center", ncols=groups, fontsize=7, frameon=False)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG, atomically (a full disk leaves no torn file); returns `path`."""
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
