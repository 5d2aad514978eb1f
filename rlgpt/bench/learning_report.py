"""The learning suite's report: its table beside published Crafter results, and its plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgpt.bench import writers
from rlgpt.bench.score import ACHIEVEMENTS
from rlgpt.bench.writers import decimals, pyplot, save_figure


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
        score = decimals(row["score"])
        if row["ours"]:
            # The spread is the standard deviation over seeds; one seed has none.
            spread = f" ± {decimals(row['spread'])}" if (row["seeds"] or 0) > 1 else ""
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
            cells = [decimals(100.0 * m["achievements_mean"].get(name, 0.0)) for m in methods]
            suffix = f" (human {HUMAN_DIAMOND_RATE:.0%})" if name == "collect_diamond" else ""
            lines.append(f"| {name}{suffix} | " + " | ".join(cells) + " |")
        lines += ["", "## Runs", ""]
        for m in methods:
            for run in m["runs"]:
                lines.append(
                    f"- {m['key']} seed {run['seed']}: score {decimals(run['score'], 2)}, "
                    f"{run['episodes']} episodes, {run['env_steps']:,} env steps, "
                    f"{decimals(run['wall_time'])} s ({decimals(run['steps_per_second'])} steps/s)"
                )
    lines.append("")
    return "\n".join(lines)


def learning_plots(result: Mapping[str, Any], out: Path, stem: str) -> list[Path]:
    """Per-achievement success bars and the score beside the anchors."""
    import numpy as np

    plt = pyplot()
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
        paths.append(save_figure(fig, out / f"{stem}_achievements.png"))
    rows = learning_rows(result)
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rows) + 1.4))
    names = [r["method"] for r in rows][::-1]
    scores = [r["score"] for r in rows][::-1]
    errors = [r["spread"] or 0.0 for r in rows][::-1]
    colors = ["#C44E52" if r["ours"] else "#8C8C8C" for r in rows][::-1]
    ax.barh(names, scores, xerr=errors, color=colors)
    ax.set_xlabel("Crafter score (%); red: these runs, grey: published")
    paths.append(save_figure(fig, out / f"{stem}_scores.png"))
    return paths


def write_learning(measured: Mapping[str, Any], out: Path, tag: str) -> dict[str, Path]:
    """Write a learning result: JSON (compact: every episode), plots, markdown; paths by kind."""
    result = {
        **writers.envelope("learning", measured["config"]),
        "wall_time": measured["wall_time"],
        "anchors": [vars(a) for a in ANCHORS],
        "methods": measured["methods"],
    }
    paths = {"json": writers.write_json(out / f"learning_{tag}.json", result, compact=True)}
    for i, png in enumerate(learning_plots(result, out, f"learning_{tag}")):
        paths[f"png{i}"] = png
    md = out / f"learning_{tag}.md"
    writers.atomic_write_text(md, learning_markdown(result))
    paths["markdown"] = md
    return paths
