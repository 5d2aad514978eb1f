"""The tasks suite's report: its tables, the runs that did not succeed, and its plot."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlgpt.bench import writers
from rlgpt.bench.tasks_records import (
    ENV_STEPS_COUNTED,
    ENV_STEPS_LEDGER,
    ENV_STEPS_NOT_COUNTED,
    aggregate,
    run_success,
    task_name,
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _success_cell(run: Mapping[str, Any]) -> str:
    if run.get("status") == "crashed":
        return "crashed"
    if run.get("success") is None:
        return "no evaluation"
    return f"{_pct(run['success'])} of {run.get('episodes', 0)}"


def _intro_lines(result: Mapping[str, Any]) -> list[str]:
    """The title, what a run and its success are, and the budgets the runs had."""
    config = result["config"]
    ctx = config.get("effective_context") or {}
    return [
        f"# Tasks: the full loop with {config['model']}",
        "",
        f"Measured {result['created']}. Each (task, seed) is one `rlgpt run` of the planner, "
        "coder, RL trainer and critic; success is the task success rate of the run's last "
        "held-out evaluation (a run without an evaluation counts as 0). Seeds: "
        f"{', '.join(str(s) for s in config['seeds'])} (each run's `seed`; the model samples "
        f"with it). Privileged full-map mode: "
        f"{'USED' if ctx.get('privileged') else 'not used'}.",
        "",
        "Budgets: "
        + ", ".join(
            f"{key} {ctx[key]}"
            for key in (
                "max_inner_loops",
                "max_outer_loops",
                "rl_timesteps",
                "eval_episodes",
                "code_check_episodes",
                "success_threshold",
                "llm_temperature",
                "llm_max_tokens",
            )
            if key in ctx
        )
        + (f"; extra context: `{json.dumps(config['context'])}`" if config.get("context") else "")
        + ".",
        "",
    ]


def _aggregate_lines(result: Mapping[str, Any]) -> list[str]:
    """The per-task table (with a "before" column when comparing) and the overall mean."""
    runs = result.get("runs", [])
    compare = result.get("compare")
    before = (compare or {}).get("aggregate", {})
    head = "| task | mean success | n | per seed | solved |"
    rule = "| --- | ---: | ---: | --- | ---: |"
    if compare:
        head += " before |"
        rule += " ---: |"
    head += " wall s / run | LLM calls / run | LLM s / run | env steps / run |"
    rule += " ---: | ---: | ---: | ---: |"
    lines = [head, rule]
    for row in result.get("aggregate", []):
        per_seed = ", ".join(f"{s}: {_pct(v)}" for s, v in row["per_seed"].items())
        cells = [
            row["task"],
            _pct(row["mean_success"]),
            str(row["n"]),
            per_seed,
            f"{row['solved']}/{row['n']}",
        ]
        if compare:
            prev = before.get(row["task"])
            cells.append(f"{_pct(prev['mean_success'])} (n={prev['n']})" if prev else "")
        cells += [
            f"{row['mean_wall_time']:,.0f}",
            f"{row['mean_llm_calls']:.1f}",
            f"{row['mean_llm_seconds']:,.0f}",
            f"{row['mean_env_steps']:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if runs:
        overall = statistics.fmean(run_success(r) for r in runs)
        lines += ["", f"All runs: mean success {_pct(overall)} over {len(runs)} runs."]
    if compare:
        lines.append(
            f"Before: `{compare['file']}` ({compare.get('model', '')}, "
            f"{compare.get('created', '')})."
        )
    return lines


def _run_lines(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table of every run, and what its env-step count covers."""
    lines = [
        "",
        "## Runs",
        "",
        "| task | seed | success | plan | LLM calls | tokens in / out | LLM s | env steps "
        "(RL / eval / checks) | wall s | run dir |",
        "| --- | ---: | --- | --- | ---: | --- | ---: | --- | ---: | --- |",
    ]
    for run in runs:
        llm = run.get("llm") or {}
        steps = run.get("env_steps") or {}
        lines.append(
            f"| {run['task']} | {run['seed']} | {_success_cell(run)} | "
            f"{', '.join(run.get('plan', []))} | {llm.get('calls', 0)} | "
            f"{llm.get('input_tokens', 0):,} / {llm.get('output_tokens', 0):,} | "
            f"{float(llm.get('seconds', 0.0)):,.0f} | {steps.get('total', 0):,} "
            f"({steps.get('rl_jobs', 0):,} / {steps.get('evaluations', 0):,} / "
            f"{steps.get('code_checks', 0):,}) | {float(run.get('wall_time', 0.0)):,.0f} | "
            f"`{run.get('run_dir', '')}` |"
        )
    if runs and all((r.get("env_steps") or {}).get("every_step") for r in runs):
        lines += ["", f"Env steps counted: {ENV_STEPS_LEDGER}."]
    else:
        lines += [
            "",
            "Env steps counted: " + "; ".join(ENV_STEPS_COUNTED) + ". Not counted (not "
            "recorded in the run's state): " + "; ".join(ENV_STEPS_NOT_COUNTED) + ".",
        ]
    return lines


def _failure_lines(run: Mapping[str, Any]) -> list[str]:
    """Where a run that did not succeed failed: its step, reasons, critic feedback and code."""
    lines = [f"### {run['task']}, seed {run['seed']}: {_success_cell(run)}", ""]
    if run.get("status") == "crashed":
        return [*lines, f"The run raised `{run.get('error', '')}`.", ""]
    failure = run.get("failure") or {}
    step = failure.get("step")
    where = f"`{step}` ({failure.get('method', '?')})" if step else "none"
    lines.append(f"- failing step: {where}")
    if failure.get("reason"):
        lines.append(f"- reason: {failure['reason']}")
    if failure.get("check_success_rate") is not None:
        lines.append(f"- its last code check: {_pct(failure['check_success_rate'])}")
    if failure.get("critic_feedback"):
        lines.append(
            f"- critic's last feedback ({failure.get('critic_source', '')}): "
            f"{failure['critic_feedback']}"
        )
    if failure.get("critic_model_feedback"):
        lines.append(f"- the critic model's last feedback: {failure['critic_model_feedback']}")
    for error in failure.get("errors", []):
        lines.append(
            f"- error: {error.get('node', '')} {error.get('kind', '')}: {error.get('message', '')}"
        )
    if failure.get("code"):
        lines += ["", "```python", failure["code"].rstrip(), "```"]
    elif failure.get("method") == "code":
        lines.append("- no code action was written for it")
    if failure.get("setup") is not None:
        lines += ["", f"RL set-up: `{json.dumps(failure['setup'])}`"]
    lines.append("")
    return lines


def _earlier_invocation_lines(result: Mapping[str, Any]) -> list[str]:
    """A line per earlier invocation of a resumed suite: its commit and how many runs it made."""
    runs = result.get("runs", [])
    lines = []
    for i, inv in enumerate(result.get("invocations", [])[:-1]):
        git = inv.get("git") or {}
        lines.append(
            f"- earlier invocation {i + 1} ({inv.get('created', '')}): commit "
            f"`{git.get('commit', '')}`"
            + (f", diff sha256 {git['diff_sha256']}" if git.get("diff_sha256") else "")
            + f", {sum(1 for r in runs if r.get('invocation') == i)} run(s)"
        )
    return lines


def tasks_markdown(result: Mapping[str, Any]) -> str:
    """The tasks tables of one result JSON (the file's markdown is exactly this)."""
    runs = result.get("runs", [])
    lines = [*_intro_lines(result), *_aggregate_lines(result), *_run_lines(runs)]
    failed = [r for r in runs if not r.get("solved")]
    if failed:
        lines += ["", "## Runs that did not succeed", ""]
    for run in failed:
        lines += _failure_lines(run)
    lines += [*writers.provenance_section(result), *_earlier_invocation_lines(result), ""]
    return "\n".join(lines)


def tasks_plot(result: Mapping[str, Any], path: Path) -> Path:
    """Bars of mean success per task (beside the "before" result if any), a dot per seed."""
    import numpy as np

    plt = writers.pyplot()
    rows = result.get("aggregate", [])
    compare = result.get("compare")
    names = [task_name(r["task"]) for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows) + 2), 3.8))
    width = 0.38 if compare else 0.6
    offset = width / 2 if compare else 0.0
    if compare:
        before = [
            100 * compare["aggregate"].get(r["task"], {}).get("mean_success", 0.0) for r in rows
        ]
        ax.bar(x - offset, before, width, color="#8C8C8C", label=f"before: {compare['model']}")
    means = [100 * r["mean_success"] for r in rows]
    ax.bar(x + offset, means, width, color="#4C72B0", label=str(result["config"]["model"]))
    for i, (mean, r) in enumerate(zip(means, rows, strict=True)):
        ax.text(i + offset, mean + 2, f"{mean:.0f}% (n={r['n']})", ha="center", fontsize=7)
    for i, r in enumerate(rows):
        values = [100 * v for v in r["per_seed"].values()]
        ax.scatter([i + offset] * len(values), values, color="black", s=10, zorder=3)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("task success (%), held-out episodes")
    ax.set_title("Full loop per task: mean over seeds (dots: seeds)")
    ax.legend(fontsize=7)
    return writers.save_figure(fig, path)


def write_tasks(result: dict[str, Any], out: Path, tag: str) -> dict[str, Path]:
    """Aggregate the runs into `result`, then write its JSON, markdown and plot; paths by kind."""
    result["aggregate"] = aggregate(result.get("runs", []), result["config"]["tasks"])
    return writers.write_result_files(result, out, f"tasks_{tag}", tasks_markdown, tasks_plot)
