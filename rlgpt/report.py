"""The run report: report.md, metrics.json and PNG plots, written from the final state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt

from rlgpt.files import atomic_write_text
from rlgpt.logging import get_logger

log = get_logger("report")


def write_report(state: dict[str, Any], context: dict[str, Any]) -> Path:
    """Write every report artefact into the run directory; returns the path of report.md."""
    run_dir = Path(state["run_dir"])
    plots = {
        "training": plot_training_curves(state.get("rl_runs", []), run_dir / "training_curves.png"),
        "success": plot_success(state.get("evaluations", []), run_dir / "success_rates.png"),
    }
    metrics = {
        "context": context,
        "state": state,
        "plots": {k: str(v) for k, v in plots.items() if v},
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=str))
    path = run_dir / "report.md"
    atomic_write_text(path, render_markdown(state, context, plots))
    log.info("report_written", path=str(path))
    return path


def render_markdown(
    state: dict[str, Any], context: dict[str, Any], plots: dict[str, Path | None]
) -> str:
    """The report as markdown."""
    out: list[str] = [f"# rlgpt run {state.get('run_id', '')}: `{state['task']}`", ""]
    description = (state.get("task_spec") or {}).get("description")
    if description:
        out += [f"- task: {description}"]
    out += [
        f"- environment: `{context['env']}`; observation: {context['observation']}",
        f"- privileged full-map mode: **{'ON' if context['privileged'] else 'off'}**",
        "- plugins: "
        + ", ".join(f"{r} = `{context[r]}`" for r in ("planner", "coder", "rl_trainer", "critic")),
        "- models: "
        + ", ".join(f"{r} = `{context[f'{r}_model']}`" for r in ("planner", "coder", "critic")),
        f"- loops used: inner {state.get('inner_loops', 0)} / {context['max_inner_loops']}, "
        f"outer {state.get('outer_loops', 0)} / {context['max_outer_loops']}",
        "",
    ]
    evaluations = state.get("evaluations", [])
    out += _result_section(state, context["env"])
    out += _plan_section(state)
    out += _code_section(state)
    out += _rl_section(state)
    out += _evaluation_section(evaluations)
    out += _achievement_section(evaluations)
    for key, title in (("training", "Training curves"), ("success", "Success rates")):
        if plots.get(key):
            out += [f"![{title}]({Path(str(plots[key])).name})", ""]
    if evaluations and evaluations[-1].get("gif_path"):
        out += [
            "## An evaluation episode",
            "",
            f"![episode]({Path(evaluations[-1]['gif_path']).name})",
            "",
        ]
    out += ["## Critic verdicts", ""]
    for i, v in enumerate(state.get("verdicts", []), 1):
        ids = f" {v['subaction_ids']}" if v["subaction_ids"] else ""
        out.append(f"{i}. **{v['route']}**{ids} ({v['source']}): {v['feedback']}")
    if not state.get("verdicts"):
        out.append("none")
    out.append("")
    errors = state.get("errors", [])
    out += ["## Errors", ""] + (
        [f"- `{e['node']}` {e['kind']}{_where(e)}: {e['message'][:400]}" for e in errors]
        or ["none"]
    )
    out += [
        "",
        "## Model usage",
        "",
        "| role | calls | cached | input tokens | output tokens | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for role, u in sorted(state.get("usage", {}).items()):
        out.append(
            f"| {role} | {u['calls']} | {u['cached_calls']} | {u['input_tokens']} | "
            f"{u['output_tokens']} | {u['seconds']:.1f} |"
        )
    return "\n".join(out) + "\n"


def _result_section(state: dict[str, Any], env: str) -> list[str]:
    """The last evaluation in one line (with the env's own score when it has achievements),
    or why there was none."""
    evaluations = state.get("evaluations", [])
    if not evaluations:
        text = "No evaluation ran."
        errors = state.get("errors", [])
        if errors:
            first = errors[0]
            text += f" `{first['node']}` {first['kind']}: {first['message']}"
        return ["## Result", "", text, ""]
    last = evaluations[-1]
    score = f"{env} score {last['score']:.2f}; " if last.get("achievements") else ""
    return [
        "## Result",
        "",
        f"Task success on {last['episodes']} held-out seeds: "
        f"**{last['task_success_rate']:.0%}**; "
        f"{score}mean episode length {last['mean_length']:.0f}.",
        "",
    ]


def _achievement_section(evaluations: list[dict[str, Any]]) -> list[str]:
    """How often the last evaluation's episodes unlocked each of the env's achievements."""
    rates = evaluations[-1].get("achievements") if evaluations else None
    if not rates:
        return []
    out = ["## Achievements (last evaluation)", "", "| achievement | episodes |", "|---|---|"]
    out += [f"| {name} | {rate:.0%} |" for name, rate in rates.items()]
    return [*out, ""]


def _where(error: dict[str, Any]) -> str:
    return f" [{error['subaction']}]" if error.get("subaction") else ""


def _plan_section(state: dict[str, Any]) -> list[str]:
    plan = state.get("plan")
    out = ["## Plan", ""]
    if not plan:
        return [*out, "No usable plan was produced.", ""]
    history = len(state.get("plan_history", []))
    out += [
        f"Plan version {history}. {plan.get('rationale', '')}",
        "",
        "| step | method | success predicate | reason |",
        "|---|---|---|---|",
    ]
    for s in plan["sub_actions"]:
        pred = s["predicate"]
        cond = (
            f"achievement {pred['name']}"
            if pred["kind"] == "achievement"
            else f"{pred['name']} >= {pred['at_least']}"
        )
        out.append(f"| {s['id']} | {s['method']} | {cond} | {s.get('reason', '')} |")
    return [*out, ""]


def _code_section(state: dict[str, Any]) -> list[str]:
    code = [r for r in state.get("library", {}).values() if r["kind"] == "code"]
    if not code:
        return []
    out = ["## Code actions", ""]
    for record in code:
        check = record.get("check", {})
        rate = check.get("success_rate")
        out.append(
            f"### `{record['name']}` v{record['version']}"
            + (
                f" — check: {rate:.0%} of {check.get('episodes')} episodes"
                if rate is not None
                else ""
            )
        )
        out += _check_errors(check.get("errors") or [])
        try:
            source = Path(record["path"]).read_text()
        except OSError:
            source = "(source file missing)"
        out += ["", "```python", source.rstrip(), "```", ""]
    return out


def _check_errors(errors: list[dict[str, Any]]) -> list[str]:
    """The errors of a code action's check, one line per kind with its first occurrence."""
    first: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for error in errors:
        kind = str(error.get("kind", "error"))
        first.setdefault(kind, error)
        counts[kind] = counts.get(kind, 0) + 1
    lines = []
    for kind, error in first.items():
        where = f" at line {error['line']}" if error.get("line") else ""
        lines.append(
            f"- check error `{kind}` x{counts[kind]}{where}: {str(error.get('message', ''))[:300]}"
        )
    return ["", *lines] if lines else []


def _rl_section(state: dict[str, Any]) -> list[str]:
    runs = state.get("rl_runs", [])
    if not runs:
        return []
    out = [
        "## RL training",
        "",
        "| sub-action | algo | library actions | env steps | steps/s | train success | early |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        out.append(
            f"| {r['subaction']} | {r['algo']} | {', '.join(r['action_names']) or 'none'} | "
            f"{r['env_steps']} | "
            f"{r['steps_per_second']:.0f} | {r['train_success_rate']:.0%} | {r['stopped_early']} |"
        )
    return [*out, ""]


def _evaluation_section(evaluations: list[dict[str, Any]]) -> list[str]:
    if not evaluations:
        return []
    steps = list(evaluations[-1]["subaction_success"])
    out = [
        "## Evaluations (held-out seeds)",
        "",
        "| iteration | task success | " + " | ".join(steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    for ev in evaluations:
        cells = [f"{ev['subaction_success'].get(s, float('nan')):.0%}" for s in steps]
        out.append(
            f"| {ev['iteration']} | {ev['task_success_rate']:.0%} | " + " | ".join(cells) + " |"
        )
    failures = evaluations[-1].get("failures", [])[:5]
    if failures:
        out += ["", "Failure traces (last evaluation):", ""]
        out += [f"- {json.dumps(f, default=str)[:400]}" for f in failures]
    return [*out, ""]


def plot_training_curves(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Rolling success rate over env steps, one line per RL run."""
    curves = []
    for run in runs:
        try:
            episodes = json.loads(Path(run["curve_path"]).read_text())
        except (OSError, ValueError, KeyError):
            continue
        if episodes:
            curves.append((run["subaction"], episodes))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, episodes in curves:
        xs = [e["env_steps"] for e in episodes]
        succ = [float(e["success"]) for e in episodes]
        window = max(1, len(succ) // 10)
        ys = [
            sum(succ[max(0, i - window + 1) : i + 1]) / len(succ[max(0, i - window + 1) : i + 1])
            for i in range(len(succ))
        ]
        ax.plot(xs, ys, label=name)
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate (rolling)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_success(evaluations: list[dict[str, Any]], path: Path) -> Path | None:
    """Per-sub-action success of each evaluation, and the task success, as grouped bars."""
    if not evaluations:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [*evaluations[-1]["subaction_success"], "TASK"]
    width = 0.8 / len(evaluations)
    for i, ev in enumerate(evaluations):
        values = [ev["subaction_success"].get(label, 0.0) for label in labels[:-1]]
        values.append(ev["task_success_rate"])
        ax.bar(
            [x + i * width for x in range(len(labels))],
            values,
            width,
            label=f"iter {ev['iteration']}",
        )
    ax.set_xticks(
        [x + 0.4 - width / 2 for x in range(len(labels))], labels, rotation=30, fontsize=8
    )
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def regenerate(run_dir: Path) -> Path:
    """Rewrite report.md and plots from a run's metrics.json."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return write_report(metrics["state"], metrics["context"])
