"""The run report: report.md, metrics.json and PNG plots, written from the final state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlgpt.envs.crafter.published import HUMAN_DIAMOND_RATE
from rlgpt.files import atomic_write_text
from rlgpt.logging import get_logger
from rlgpt.report_plots import (
    Anchor,
    Curve,
    achievement_figure,
    save_figure,
    success_figure,
    training_figure,
)
from rlgpt.run_paths import HERE, in_folder, relative_to_run, saved_state

log = get_logger("report")

#: The report's figures: key, file and the caption report.md gives it.
PLOTS = (
    ("training", "training_curves.png", "Training curves"),
    ("success", "success_rates.png", "Success rates"),
    ("achievements", "achievements.png", "Success per achievement"),
)


def write_report(
    state: dict[str, Any], context: dict[str, Any], run_dir: Path | None = None
) -> Path:
    """Write every report artefact into the run folder; returns the path of report.md.

    The folder's files name paths inside it relative to it, so a copied or moved run
    folder renders the same report.

    Args:
        state: The run's state: live (its paths absolute) or read back from metrics.json.
        context: The run's settings, as a dict.
        run_dir: The run folder, when it is not where the state was written (a moved run).
    """
    recorded = str(state.get("run_dir") or HERE)
    folder = Path(run_dir) if run_dir is not None else Path(recorded)
    saved = saved_state(state)
    settings: dict[str, Any] = relative_to_run(context, recorded)
    plots = write_plots(saved, settings, folder)
    metrics = {
        "context": settings,
        "state": saved,
        "plots": {k: v.name for k, v in plots.items()},
    }
    atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2, default=str))
    path = folder / "report.md"
    atomic_write_text(path, render_markdown(saved, settings, plots, folder))
    log.info("report_written", path=str(path))
    return path


def write_plots(state: dict[str, Any], context: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Draw the figures the run has data for into `folder`; their paths by key."""
    figures = {}
    runs = state.get("rl_runs", [])
    if runs:
        figures["training"] = training_figure(training_curves(runs, folder))
    evaluations = state.get("evaluations", [])
    if evaluations:
        figures["success"] = success_figure(evaluations)
        last = evaluations[-1]
        if last.get("achievements"):
            figures["achievements"] = achievement_figure(
                last["achievements"], int(last["episodes"]), achievement_anchors(context["env"])
            )
    files = {key: name for key, name, _ in PLOTS}
    return {key: save_figure(fig, folder / files[key]) for key, fig in figures.items()}


def training_curves(runs: list[dict[str, Any]], folder: Path) -> list[Curve]:
    """The finished episodes of each RL job, read from its curve file (none if unreadable)."""
    curves = []
    seen: dict[str, int] = {}
    for run in runs:
        name = str(run["subaction"])
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name} (job {seen[name]})"
        steps: list[int] = []
        success: list[float] = []
        try:
            episodes = json.loads(in_folder(folder, run["curve_path"]).read_text())
            steps = [int(e["env_steps"]) for e in episodes]
            success = [float(e["success"]) for e in episodes]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A missing or malformed curve costs its line, not the report.
            log.warning("curve_unreadable", subaction=name, error=repr(exc))
            steps, success = [], []
        curves.append(Curve(label, steps, success, int(run.get("env_steps", 0))))
    return curves


def achievement_anchors(env: str) -> list[Anchor]:
    """Published per-achievement success rates to set beside a run's, for its env.

    Of the published Crafter results the project keeps, only the human experts' diamond
    rate is per achievement; the others are Crafter scores.
    """
    if env != "crafter":
        return []
    return [Anchor("human experts (published)", {"collect_diamond": HUMAN_DIAMOND_RATE})]


def render_markdown(
    state: dict[str, Any], context: dict[str, Any], plots: dict[str, Path], folder: Path
) -> str:
    """The report as markdown; files the state names (code sources) are read under `folder`."""
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
    out += _final_section(state, context["env"])
    out += _curriculum_section(state)
    out += _plan_section(state)
    out += _code_section(state, folder)
    out += _rl_section(state)
    out += _evaluation_section(evaluations)
    out += _achievement_section(evaluations)
    for key, _, title in PLOTS:
        if key in plots:
            out += [f"![{title}]({plots[key].name})", ""]
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


def _final_section(state: dict[str, Any], env: str) -> list[str]:
    """The final whole-game agent of an open-ended task: its episodes' rates and score."""
    final = state.get("final_policy")
    if not final:
        return []
    kind = "RL policy" if final["mode"] == "rl" else "code actions alone (no RL)"
    actions = ", ".join(f"`{a}`" for a in final["action_names"]) or "none"
    used = sum(int(v) for v in state.get("env_steps", {}).values())
    out = [
        "## Final whole-game agent",
        "",
        f"{kind}; actions beside the primitives: {actions}.",
        "",
        f"{env} score **{final['score']:.2f}** over its {final['episodes']} episodes "
        f"({final['env_steps']:,} env steps; the whole run took {used:,})"
        + (", stopped early" if final["stopped_early"] else "")
        + ".",
        "",
        "| achievement | episodes |",
        "|---|---|",
    ]
    out += [f"| {name} | {rate:.0%} |" for name, rate in final["achievements"].items() if rate]
    return [*out, ""]


def _curriculum_section(state: dict[str, Any]) -> list[str]:
    """The curriculum's rounds: what each kept, added and aimed at."""
    rounds = state.get("curriculum") or []
    if not rounds:
        return []
    out = [
        "## Curriculum",
        "",
        "| round | targets | new steps | kept steps | missed before |",
        "|---|---|---|---|---|",
    ]
    for r in rounds:
        out.append(
            f"| {r['round']} | {', '.join(r['targets']) or '-'} | {', '.join(r['added'])} | "
            f"{len(r['kept'])} | {', '.join(r['missed']) or '-'} |"
        )
    return [*out, ""]


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


def _code_section(state: dict[str, Any], folder: Path) -> list[str]:
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
        if record.get("origin"):
            out.append(f"- origin: {record['origin']}")
        out += _check_errors(check.get("errors") or [])
        try:
            source = in_folder(folder, record["path"]).read_text()
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


def regenerate(run_dir: Path) -> Path:
    """Rewrite report.md, metrics.json and the plots from a run folder's metrics.json.

    The folder may have been copied or moved since the run: its files are read where they
    are now (an older metrics.json names them by absolute paths into where the run was).
    """
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return write_report(metrics["state"], metrics["context"], run_dir)
