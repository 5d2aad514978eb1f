"""Result files of a suite: JSON (config, versions, machine, raw results), PNG plots, markdown."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rlgpt.bench.score import ACHIEVEMENTS
from rlgpt.tools.library import atomic_write_text


@dataclass(frozen=True)
class Anchor:
    """A published Crafter result placed beside ours."""

    method: str
    score: float
    budget: str
    note: str = ""


# Crafter score (%) as published; 1M env steps unless the budget says otherwise.
ANCHORS: tuple[Anchor, ...] = (
    Anchor("Human experts", 50.5, "-", "collect_diamond success 12%"),
    Anchor("AdaRefiner", 28.2, "5M"),
    Anchor("SPRING (GPT-4, no training)", 27.3, "no training"),
    Anchor("Achievement Distillation", 21.8, "1M"),
    Anchor("PPO (ResNet)", 15.6, "1M"),
    Anchor("DreamerV3", 14.5, "1M"),
    Anchor("PPO (SB3)", 4.6, "1M"),
    Anchor("Random", 1.6, "1M"),
)
HUMAN_DIAMOND_RATE = 0.12

_PACKAGES = (
    "rlgpt",
    "crafter",
    "gymnasium",
    "stable-baselines3",
    "sb3-contrib",
    "torch",
    "numpy",
    "opensimplex",
    "langgraph",
)


def versions() -> dict[str, str]:
    """Installed versions of the packages the results depend on, plus Python."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """What the numbers were measured on (cores, load, CPU model, memory)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python_executable": sys.executable,
    }
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(first[1]) / 2**20, 1)
    return info


def envelope(suite: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The common head of every result JSON."""
    return {
        "suite": suite,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "config": dict(config),
        "versions": versions(),
        "machine": machine(),
    }


def write_json(path: Path, data: Mapping[str, Any], compact: bool = False) -> Path:
    """Write JSON atomically (indented, or compact for large per-episode data); returns path."""
    if compact:
        text = json.dumps(data, separators=(",", ":"), default=str)
    else:
        text = json.dumps(data, indent=1, default=str)
    atomic_write_text(path, text + "\n")
    return path


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


# ------------------------------------------------------------------ throughput
def throughput_markdown(result: Mapping[str, Any]) -> str:
    """Markdown table of one throughput run: absolute rates and ratios to the raw no-render rate."""
    lines = [
        "# Throughput",
        "",
        f"Measured {result['created']} on {result['machine'].get('cpu_count')} cores "
        f"(load average {result['machine'].get('load_average')}); every ratio is within this "
        "run, relative to raw Crafter without rendering (for PPO rows: the mean of raw rates "
        "probed just before and after that training run).",
        "",
        "| measurement | value | unit | ratio to raw no-render |",
        "| --- | ---: | --- | ---: |",
    ]
    for row in result["measurements"]:
        ratio = row.get("ratio")
        lines.append(
            f"| {row['name']} | {_fmt(row['value'], 3 if row['unit'] == 's' else 1)} | "
            f"{row['unit']} | {'' if ratio is None else _fmt(ratio, 2)} |"
        )
    goals = result.get("goals", {})
    if goals:
        lines += ["", "| goal | target | measured | met |", "| --- | --- | --- | --- |"]
        for name, goal in goals.items():
            lines.append(
                f"| {name} | {goal['target']} | {goal['measured']} | "
                f"{'yes' if goal['met'] else 'no'} |"
            )
    lines.append("")
    return "\n".join(lines)


def throughput_comparison(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Markdown table of two throughput runs side by side (ratios are within each run)."""
    old = {r["name"]: r for r in before["measurements"]}
    lines = [
        "# Throughput before and after",
        "",
        f"Before: {before['created']} (load {before['machine'].get('load_average')}); "
        f"after: {after['created']} (load {after['machine'].get('load_average')}). "
        "Ratios are to raw Crafter without rendering, measured within the same run.",
        "",
        "| measurement | before | ratio before | after | ratio after |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in after["measurements"]:
        prev = old.get(row["name"])
        digits = 3 if row["unit"] == "s" else 1

        def cell(r: Mapping[str, Any] | None, key: str, d: int) -> str:
            if r is None or r.get(key) is None:
                return ""
            return _fmt(float(r[key]), d)

        lines.append(
            f"| {row['name']} ({row['unit']}) | {cell(prev, 'value', digits)} | "
            f"{cell(prev, 'ratio', 2)} | {cell(row, 'value', digits)} | {cell(row, 'ratio', 2)} |"
        )
    lines.append("")
    return "\n".join(lines)


def throughput_plot(result: Mapping[str, Any], path: Path) -> Path:
    """Bar chart of the steps/s measurements."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["measurements"] if r["unit"] == "steps/s"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    names = [r["name"] for r in rows][::-1]
    values = [r["value"] for r in rows][::-1]
    ax.barh(names, values, color="#4C72B0")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("env steps per second")
    ax.set_title("rlgpt throughput on Crafter")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -------------------------------------------------------------------- learning
def learning_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per method: our results (with mean ± spread over seeds) and the anchors."""
    rows: list[dict[str, Any]] = []
    for method in result["methods"]:
        rows.append(
            {
                "method": method["label"],
                "score": method["score_mean"],
                "spread": method["score_std"] if len(method["runs"]) > 1 else None,
                "budget": f"{method['budget_env_steps']:,} steps",
                "seeds": len(method["runs"]),
                "note": method.get("note", ""),
                "ours": True,
            }
        )
    for anchor in ANCHORS:
        rows.append(
            {
                "method": anchor.method,
                "score": anchor.score,
                "spread": None,
                "budget": anchor.budget,
                "seeds": None,
                "note": ("published; " + anchor.note).rstrip("; "),
                "ours": False,
            }
        )
    rows.sort(key=lambda r: -float(r["score"]))
    return rows


def learning_markdown(result: Mapping[str, Any]) -> str:
    """The learning table beside the published anchors, plus per-achievement success rates."""
    config = result["config"]
    lines = [
        f"# Learning on Crafter ({config.get('budget_name', '')} budget)",
        "",
        f"Budget per run: {config['budget']:,} env steps (every step a code action takes counts); "
        f"episodes up to {config['episode_length']:,} steps; privileged full-map mode: "
        f"{'USED' if config.get('privileged') else 'not used'}. Score = "
        "exp(mean(ln(1+s_i)))-1 over the 22 achievements, s_i = success rate (%) over the "
        "training episodes. Published anchors are at 1M steps unless noted.",
        "",
    ]
    if config.get("library"):
        lines += [
            f"Action library: `{config['library']}` ({config.get('library_origin', '')}).",
            "",
        ]
    lines += [
        "| method | Crafter score (%) | budget | seeds | note |",
        "| --- | ---: | --- | ---: | --- |",
    ]
    for row in learning_rows(result):
        score = _fmt(row["score"])
        if row["ours"]:
            # The spread is the standard deviation over seeds; one seed has none.
            spread = f" ± {_fmt(row['spread'])}" if (row["seeds"] or 0) > 1 else ""
            score = f"**{score}{spread}**"
        seeds = "" if row["seeds"] is None else str(row["seeds"])
        lines.append(f"| {row['method']} | {score} | {row['budget']} | {seeds} | {row['note']} |")
    methods = result["methods"]
    if methods:
        lines += [
            "",
            "## Success rate per achievement (%, mean over seeds)",
            "",
            "| achievement | " + " | ".join(m["key"] for m in methods) + " |",
            "| --- |" + " ---: |" * len(methods),
        ]
        for name in ACHIEVEMENTS:
            cells = [_fmt(100.0 * m["achievements_mean"].get(name, 0.0)) for m in methods]
            suffix = f" (human {HUMAN_DIAMOND_RATE:.0%})" if name == "collect_diamond" else ""
            lines.append(f"| {name}{suffix} | " + " | ".join(cells) + " |")
        lines += ["", "## Runs", ""]
        for m in methods:
            for run in m["runs"]:
                lines.append(
                    f"- {m['key']} seed {run['seed']}: score {_fmt(run['score'], 2)}, "
                    f"{run['episodes']} episodes, {run['env_steps']:,} env steps, "
                    f"{_fmt(run['wall_time'])} s ({_fmt(run['steps_per_second'])} steps/s)"
                )
    lines.append("")
    return "\n".join(lines)


def learning_plots(result: Mapping[str, Any], out: Path, stem: str) -> list[Path]:
    """Per-achievement success bars and the score beside the anchors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    methods: Sequence[Mapping[str, Any]] = result["methods"]
    if methods:
        fig, ax = plt.subplots(figsize=(11, 4))
        width = 0.8 / len(methods)
        x = np.arange(len(ACHIEVEMENTS))
        for i, m in enumerate(methods):
            values = [100.0 * m["achievements_mean"].get(a, 0.0) for a in ACHIEVEMENTS]
            ax.bar(x + i * width, values, width, label=m["label"])
        ax.set_xticks(x + 0.4 - width / 2, ACHIEVEMENTS, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("success rate (%)")
        ax.set_title("Success rate per achievement over the training episodes")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{stem}_achievements.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    rows = learning_rows(result)
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rows) + 1.4))
    names = [r["method"] for r in rows][::-1]
    scores = [r["score"] for r in rows][::-1]
    errors = [r["spread"] or 0.0 for r in rows][::-1]
    colors = ["#C44E52" if r["ours"] else "#8C8C8C" for r in rows][::-1]
    ax.barh(names, scores, xerr=errors, color=colors)
    ax.set_xlabel("Crafter score (%); red: these runs, grey: published")
    fig.tight_layout()
    path = out / f"{stem}_scores.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)
    return paths
