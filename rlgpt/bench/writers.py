"""Result files of a suite: JSON (config, versions, machine, raw results), PNG plots, markdown."""

from __future__ import annotations

import contextlib
import hashlib
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

from rlgpt.actions.library import atomic_write_text
from rlgpt.bench.score import ACHIEVEMENTS


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


#: Result files are left out of the tree state, so a suite writing them (or a resumed one
#: rewriting them) does not change the provenance it records.
RESULTS_PATHSPEC = ":(exclude)bench/results"
UNTRACKED_LISTED = 50


def _git(*args: str) -> bytes | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            timeout=20,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit, whether the tree differs from it, and fingerprints of the differences.

    `diff_sha256` is the SHA-256 of the output of `diff_command` (run at the repository
    root); untracked files are listed and hashed (path and content) separately, since
    `git diff` does not show them. Files under bench/results are left out.
    """
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "", "dirty": None, "note": "not a git checkout"}
    root = (_git("rev-parse", "--show-toplevel") or b"").decode().strip()
    diff = _git("-C", root, "diff", "HEAD", "--", ".", RESULTS_PATHSPEC) or b""
    listed = _git("-C", root, "ls-files", "--others", "--exclude-standard", "-z", "--", ".",
                  RESULTS_PATHSPEC) or b""  # fmt: skip
    untracked = sorted(p for p in listed.decode(errors="replace").split("\0") if p)
    state: dict[str, Any] = {
        "commit": commit.decode().strip(),
        "dirty": bool(diff) or bool(untracked),
        "diff_command": f"git diff HEAD -- . '{RESULTS_PATHSPEC}'",
    }
    if diff:
        state["diff_sha256"] = hashlib.sha256(diff).hexdigest()
    if untracked:
        digest = hashlib.sha256()
        for name in untracked:
            digest.update(name.encode() + b"\0")
            with contextlib.suppress(OSError):
                digest.update(hashlib.sha256((Path(root) / name).read_bytes()).digest())
        state["untracked"] = untracked[:UNTRACKED_LISTED]
        state["untracked_count"] = len(untracked)
        state["untracked_sha256"] = digest.hexdigest()
    return state


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
    """The common head of every result JSON: what ran, on which code, how and where.

    `git` holds the commit, whether the tree had changes and their fingerprints
    (`git_state`); `command` the exact command line (`sys.argv`).
    """
    git = git_state()
    return {
        "suite": suite,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git["commit"][:7],
        "git": git,
        "command": list(sys.argv),
        "config": dict(config),
        "versions": versions(),
        "machine": machine(),
    }


def provenance_lines(result: Mapping[str, Any]) -> list[str]:
    """Commit, tree state, command line and machine of a result, as markdown list items."""
    git = result.get("git") or {}
    commit = git.get("commit") or result.get("git_commit") or "unknown"
    tree = "clean tree"
    if git.get("dirty"):
        tree = "uncommitted changes"
        if git.get("diff_sha256"):
            tree += f"; `{git.get('diff_command', 'git diff HEAD')}` sha256 {git['diff_sha256']}"
        if git.get("untracked_count"):
            tree += f"; {git['untracked_count']} untracked file(s), sha256 " + str(
                git.get("untracked_sha256", "")
            )
    elif git.get("dirty") is None:
        tree = "tree state unknown"
    lines = [f"- commit `{commit}` ({tree})"]
    command = [str(a) for a in result.get("command") or []]
    if command:
        lines.append(f"- command: `{' '.join([Path(command[0]).name, *command[1:]])}`")
    info = result.get("machine") or {}
    lines.append(
        f"- machine: {info.get('cpu_model', info.get('processor', '?'))}, "
        f"{info.get('cpu_count')} cores, {info.get('memory_gib')} GiB, "
        f"load average {info.get('load_average')}"
    )
    return lines


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
