"""The learning suite's report: its table beside published Crafter results, and its plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgpt.bench import writers
from rlgpt.bench.learning_config import OBSERVATIONS
from rlgpt.bench.score import ACHIEVEMENTS
from rlgpt.bench.writers import decimals, pyplot, save_figure
from rlgpt.envs.crafter.published import HUMAN_DIAMOND_RATE


@dataclass(frozen=True)
class Anchor:
    """A published Crafter result placed beside ours."""

    method: str
    score: float
    budget: str
    note: str = ""
    observation: str = "64x64 RGB"


# Crafter score (%) as published, each over its paper's own seeds; 1M env steps unless the
# budget says otherwise. They are set beside the pixel protocol only.
ANCHORS: tuple[Anchor, ...] = (
    Anchor("Human experts", 50.5, "-", "collect_diamond success 12%", "the game screen"),
    Anchor("AdaRefiner", 28.2, "5M", "LLM guidance during training"),
    Anchor("SPRING (GPT-4, no training)", 27.3, "no training", "", "text description of the view"),
    Anchor("Achievement Distillation", 21.8, "1M"),
    Anchor("PPO (ResNet)", 15.6, "1M"),
    Anchor("DreamerV3", 14.5, "1M"),
    Anchor("PPO (SB3)", 4.6, "1M"),
    Anchor("Random", 1.6, "1M", "", "none"),
)

#: How each of our runs' observations reads in a table, and under which protocol it falls.
PIXELS, SYMBOLIC = "pixels", "symbolic"


def observation_text(method: Mapping[str, Any]) -> str:
    """What a method's agent observed, as a table cell."""
    observation = str(method.get("observation", ""))
    text = OBSERVATIONS.get(observation, observation or "not recorded")
    if method["key"] in ("b", "d"):  # their policies call code actions
        text += "; code actions read the skill API"
    return text


def _used(method: Mapping[str, Any], budget: int) -> str:
    """The env steps a method's runs used, against the budget."""
    used = [int(u) for u in method.get("env_steps_used", [])]
    if not used:
        return "not recorded"
    low, high = min(used), max(used)
    text = f"{low:,}" if low == high else f"{low:,}-{high:,}"
    if high < budget or high > 1.01 * budget:  # an option may end a few steps past it
        text += f" ({100.0 * high / budget:.1f}% of the budget)"
    return text


def learning_rows(result: Mapping[str, Any], observation: str) -> list[dict[str, Any]]:
    """One row per method of one observation (mean ± spread over seeds), and for the pixel
    protocol the published anchors; best first."""
    budget = int(result["config"]["budget"])
    rows: list[dict[str, Any]] = []
    for method in result["methods"]:
        if method.get("observation", "") != observation:
            continue
        runs = method["runs"]
        per_seed = ", ".join(decimals(r["score"], 2) for r in runs)
        rows.append(
            {
                "method": method["label"],
                "observation": observation_text(method),
                "score": method["score_mean"],
                "spread": method["score_std"] if len(runs) > 1 else None,
                "seeds": len(runs),
                "per_seed": per_seed,
                "used": _used(method, budget),
                "note": method.get("note", ""),
                "ours": True,
            }
        )
    if observation == PIXELS:
        for anchor in ANCHORS:
            rows.append(
                {
                    "method": anchor.method,
                    "observation": anchor.observation,
                    "score": anchor.score,
                    "spread": None,
                    "seeds": None,
                    "per_seed": "",
                    "used": anchor.budget,
                    "note": ("published; " + anchor.note).rstrip("; "),
                    "ours": False,
                }
            )
    rows.sort(key=lambda r: -float(r["score"]))
    return rows


_SECTIONS = (
    (PIXELS, "Standard protocol: crafter's 64x64 RGB image, CNN policy",
     "The protocol of the published baselines (their observation and budget; PPO's "
     "hyperparameters are this project's, listed below), set beside them."),
    (SYMBOLIC, "Second protocol: symbolic observation, MLP policy",
     "Not comparable with the published results, which see pixels: the symbolic view has no "
     "darkness, no noise and names every cell. No published row is set beside it."),
)  # fmt: skip


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| method | observation | Crafter score (%) | n | per seed | env steps used | note |",
        "| --- | --- | ---: | ---: | --- | --- | --- |",
    ]
    for row in rows:
        score = decimals(row["score"])
        if row["ours"]:
            # The spread is the sample standard deviation over seeds; one seed has none.
            spread = f" ± {decimals(row['spread'])}" if (row["seeds"] or 0) > 1 else ""
            score = f"**{score}{spread}**"
        seeds = "" if row["seeds"] is None else str(row["seeds"])
        lines.append(
            f"| {row['method']} | {row['observation']} | {score} | {seeds} | {row['per_seed']} "
            f"| {row['used']} | {row['note']} |"
        )
    return lines


def learning_markdown(result: Mapping[str, Any]) -> str:
    """The learning tables by protocol (the pixel one beside the published anchors), the
    per-achievement success rates and the runs."""
    config = result["config"]
    methods = result["methods"]
    lines = [
        f"# Learning on Crafter ({config.get('budget_name', '')} budget)",
        "",
        f"Budget per run: {config['budget']:,} env steps; every env step any part of a method "
        "takes counts (code actions, preludes, checks, evaluations). Episodes up to "
        f"{config['episode_length']:,} steps; privileged full-map mode: "
        f"{'USED' if config.get('privileged') else 'not used'}. Score = "
        "exp(mean(ln(1+s_i)))-1 over the 22 achievements, s_i = success rate (%) over all "
        "training episodes of a run. n = run seeds; run seed s trains on env seeds "
        f"s x {config.get('env_seed_stride', '?'):,} + i, so no two runs share a world; "
        "± is the sample standard deviation over seeds.",
        "",
    ]
    if config.get("library"):
        lines += [
            f"Action library: `{config['library']}` ({config.get('library_origin', '')}).",
            "",
        ]
    shown = {PIXELS, SYMBOLIC}
    for observation, title, text in _SECTIONS:
        rows = learning_rows(result, observation)
        if observation == SYMBOLIC and not any(r["ours"] for r in rows):
            continue
        lines += [f"## {title}", "", text, "", *_table(rows), ""]
    others = sorted({str(m.get("observation", "")) for m in methods} - shown)
    for observation in others:
        lines += [
            f"## Without a trained policy ({observation or 'observation not recorded'})",
            "",
            "These methods read the skill API (the cells the agent has seen), not pixels; they "
            "are set beside neither protocol's anchors.",
            "",
            *_table(learning_rows(result, observation)),
            "",
        ]
    ppo = next((r.get("ppo") for m in methods for r in m["runs"] if r.get("ppo")), None)
    if ppo:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(ppo.items()))
        lines += [f"PPO settings of a and b: {settings}; {config.get('n_envs')} envs.", ""]
    if methods:
        lines += [
            "## Success rate per achievement (%, mean over seeds)",
            "",
            "| achievement | " + " | ".join(_column(m) for m in methods) + " |",
            "| --- |" + " ---: |" * len(methods),
        ]
        for name in ACHIEVEMENTS:
            cells = [decimals(100.0 * m["achievements_mean"].get(name, 0.0)) for m in methods]
            suffix = f" (human {HUMAN_DIAMOND_RATE:.0%})" if name == "collect_diamond" else ""
            lines.append(f"| {name}{suffix} | " + " | ".join(cells) + " |")
        lines += ["", "## Runs", ""]
        lines += [_run_line(m, run) for m in methods for run in m["runs"]]
        graph_runs = [(m, r) for m in methods for r in m["runs"] if "env_steps_by_part" in r]
        if graph_runs:
            lines += ["", "## The graph's runs (c, d)", ""]
            for m, run in graph_runs:
                lines += _graph_run_lines(m, run)
    lines += writers.provenance_section(result)
    lines.append("")
    return "\n".join(lines)


def _run_line(method: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    """One run: seed, env seeds, score, episodes, env steps, time, attempts and code."""
    time = f"{decimals(run['wall_time'])} s ({decimals(run['steps_per_second'])} steps/s"
    if run.get("resumes"):
        time += f", resumed {run['resumes']}x"
        if not run.get("wall_time_complete", False):
            # An attempt before the resume left no time: neither total nor rate is known.
            time = f"{decimals(run['wall_time'])} s in the last attempt (resumed {run['resumes']}x"
    codes = [
        f"{g['commit'][:7]}" + (" + changes" if g.get("dirty") else "")
        for g in run.get("git_attempts") or [run.get("git") or {}]
        if g.get("commit")
    ]
    if codes:
        time += "; code " + ", then ".join(dict.fromkeys(codes))
    return (
        f"- {_column(method)} seed {run['seed']} (env seeds {run.get('env_seeds', '?')}): "
        f"score {decimals(run['score'], 2)}, {run['episodes']} episodes, "
        f"{run['env_steps']:,} env steps, {time})"
    )


def _graph_run_lines(method: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    """A graph run: where its env steps went, what its curriculum chose in which order, what
    the final agent could call, and the model's calls, tokens and time."""
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(run["env_steps_by_part"].items()))
    rounds = "; ".join(
        f"{r['round']}: {', '.join(r['targets']) or '(no new target)'}"
        + (f" (missed before: {', '.join(r['missed'])})" if r.get("missed") else "")
        for r in run.get("curriculum", [])
    )
    usage = run.get("usage") or {}
    calls = sum(int(u.get("calls", 0)) for u in usage.values())
    tokens = sum(int(u.get("input_tokens", 0)) + int(u.get("output_tokens", 0))
                 for u in usage.values())  # fmt: skip
    seconds = sum(float(u.get("seconds", 0.0)) for u in usage.values())
    # The note ends with the same split of env steps as the line below it.
    note = str(run.get("note", "")).split("; env steps:")[0]
    if run.get("wall_time_complete", not run.get("resumes")):
        wall = f"{decimals(seconds)} s of {decimals(run['wall_time'])} s wall time"
    else:
        # The model's time is kept in the run's state across attempts; wall time is not.
        wall = (
            f"{decimals(seconds)} s over all {run.get('resumes', 0) + 1} attempts "
            f"(the last attempt took {decimals(run['wall_time'])} s of wall time; "
            "earlier attempts' wall time is not recorded)"
        )
    return [
        f"- {_column(method)} seed {run['seed']}: {note}",
        f"  - env steps: {parts}",
        f"  - curriculum rounds (targets): {rounds or 'none'}",
        f"  - final agent's actions: {', '.join(run.get('final_actions') or []) or 'none'}",
        f"  - model: {calls} calls, {tokens:,} tokens, {wall}",
    ]


def _column(method: Mapping[str, Any]) -> str:
    """A method's short name: its key and, for a and b, its observation."""
    observation = str(method.get("observation", ""))
    return f"{method['key']} ({observation})" if observation in OBSERVATIONS else method["key"]


def learning_plots(result: Mapping[str, Any], out: Path, stem: str) -> list[Path]:
    """Per-achievement success bars and the pixel protocol's scores beside the anchors."""
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
            ax.bar(x + i * width, values, width, label=f"{_column(m)}: {m['label']}")
        ax.set_xticks(x + 0.4 - width / 2, ACHIEVEMENTS, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("success rate (%)")
        ax.set_title("Success rate per achievement over the training episodes")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, out / f"{stem}_achievements.png"))
    # Only the pixel protocol is set beside the published results.
    rows = learning_rows(result, PIXELS)
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rows) + 1.4))
    names = [r["method"] for r in rows][::-1]
    scores = [r["score"] for r in rows][::-1]
    errors = [r["spread"] or 0.0 for r in rows][::-1]
    colors = ["#C44E52" if r["ours"] else "#8C8C8C" for r in rows][::-1]
    ax.barh(names, scores, xerr=errors, color=colors)
    ax.set_xlabel("Crafter score (%), 64x64 RGB protocol; red: these runs, grey: published")
    paths.append(save_figure(fig, out / f"{stem}_scores.png"))
    return paths


def write_learning(measured: Mapping[str, Any], out: Path, tag: str) -> dict[str, Path]:
    """Write a learning result: JSON (compact: every episode), plots, markdown; paths by kind."""
    result = {
        **writers.envelope("learning", measured["config"]),
        "wall_time": measured["wall_time"],
        "runs_wall_time": measured.get("runs_wall_time"),
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
