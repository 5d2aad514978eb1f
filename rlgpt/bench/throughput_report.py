"""The throughput suite's report: its table, a before/after table of two runs, and its plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlgpt.bench import writers
from rlgpt.bench.writers import decimals, pyplot, save_figure


def throughput_markdown(result: Mapping[str, Any]) -> str:
    """Markdown table of one throughput run: rates and their ratios to the median raw probe."""
    spread = result.get("raw_no_render") or {}
    probes = result.get("probes") or []
    lines = [
        "# Throughput",
        "",
        f"Measured {result['created']} on {result['machine'].get('cpu_count')} cores "
        f"(load average {result['machine'].get('load_average')}). Every ratio is within this "
        f"run, to the median of {spread.get('n', 0)} raw crafter.Env probes (no render) taken "
        "before the first part, between every two parts and after the last: median "
        f"{decimals(spread.get('median', 0.0))}, range {decimals(spread.get('min', 0.0))}-"
        f"{decimals(spread.get('max', 0.0))} steps/s. Training rows give the rate inside SB3's "
        "learn() (its fps) and, as `whole job`, the rate of the whole job (set-up and saving "
        "included).",
        "",
        result.get("process_layout", ""),
        "",
        "| measurement | value | unit | ratio to raw no-render (median) | whole job |",
        "| --- | ---: | --- | ---: | --- |",
    ]
    for row in result["measurements"]:
        ratio = row.get("ratio")
        job = ""
        if row.get("job_steps_per_second") is not None:
            job = (
                f"{decimals(row['job_steps_per_second'])} steps/s ({decimals(row['job_ratio'], 2)})"
            )
        lines.append(
            f"| {row['name']} | {decimals(row['value'], 3 if row['unit'] == 's' else 1)} | "
            f"{row['unit']} | {'' if ratio is None else decimals(ratio, 2)} | {job} |"
        )
    goals = result.get("goals", {})
    if goals:
        lines += ["", "| goal | target | measured | met |", "| --- | --- | --- | --- |"]
        for name, goal in goals.items():
            lines.append(
                f"| {name} | {goal['target']} | {goal['measured']} | "
                f"{'yes' if goal['met'] else 'no'} |"
            )
    lines += _time_split(result.get("raw", {}))
    if probes:
        lines += ["", "Raw probes in order: " + ", ".join(
            f"{decimals(p['steps_per_second'], 0)} (after {p['after']})" for p in probes
        ) + "."]  # fmt: skip
    lines += writers.provenance_section(result)
    lines.append("")
    return "\n".join(lines)


def _time_split(raw: Mapping[str, Any]) -> list[str]:
    """Where each training run's wall time went (`RLResult.phase_seconds`), in percent."""
    runs = {**raw.get("ppo", {}), **raw.get("ppo_code", {})}
    split = {name: run["phase_seconds"] for name, run in runs.items() if run.get("phase_seconds")}
    if not split:
        return []
    lines = [
        "",
        "Where each training run's time went (percent of the whole job): env stepping and "
        "resets (code actions included), the rest of rollout collection (policy forward "
        "passes, rollout buffer, callbacks), PPO updates, set-up and saving.",
        "",
        "| training run | env | policy | update | set-up and saving | job seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, phases in split.items():
        total = sum(phases.values()) or 1.0
        cells = " | ".join(
            decimals(100 * phases[k] / total, 0) for k in ("env", "policy", "update", "other")
        )
        lines.append(f"| {name} | {cells} | {decimals(total, 1)} |")
    return lines


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
            return decimals(float(r[key]), d)

        lines.append(
            f"| {row['name']} ({row['unit']}) | {cell(prev, 'value', digits)} | "
            f"{cell(prev, 'ratio', 2)} | {cell(row, 'value', digits)} | {cell(row, 'ratio', 2)} |"
        )
    lines.append("")
    return "\n".join(lines)


def throughput_plot(result: Mapping[str, Any], path: Path) -> Path:
    """Bar chart of the steps/s measurements."""
    plt = pyplot()
    rows = [r for r in result["measurements"] if r["unit"] == "steps/s"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    names = [r["name"] for r in rows][::-1]
    values = [r["value"] for r in rows][::-1]
    ax.barh(names, values, color="#4C72B0")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("env steps per second")
    ax.set_title("rlgpt throughput on Crafter")
    return save_figure(fig, path)


def write_throughput(
    measured: Mapping[str, Any], out: Path, tag: str, compare_with: Path | None = None
) -> dict[str, Path]:
    """Write a throughput result (JSON, markdown, plot; beside `compare_with`, a before/after
    table); returns their paths by kind."""
    result = {**writers.envelope("throughput", measured["raw"]["config"]), **measured}
    paths = writers.write_result_files(
        result, out, f"throughput_{tag}", throughput_markdown, throughput_plot
    )
    if compare_with:
        before = json.loads(Path(compare_with).read_text())
        compared = out / f"throughput_{Path(compare_with).stem.removeprefix('throughput_')}"
        compared = compared.with_name(f"{compared.name}_vs_{tag}.md")
        writers.atomic_write_text(compared, throughput_comparison(before, result))
        paths["comparison"] = compared
    return paths
