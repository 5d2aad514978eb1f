"""The model-speed suite's report: the summary of its calls, their tables and the plot."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlgpt.bench import writers
from rlgpt.bench.model_speed_probes import ROLES

#: Summary fields: (key in a call record, column title).
METRICS: tuple[tuple[str, str], ...] = (
    ("prompt_tokens", "prompt tokens"),
    ("cached_tokens", "cached tokens"),
    ("prompt_seconds", "prompt s"),
    ("generate_seconds", "generation s"),
    ("prompt_tps", "prompt tok/s"),
    ("generate_tps", "generated tok/s"),
    ("call_seconds", "call s"),
)


# ------------------------------------------------------------------ summary
def _stat(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(float(statistics.median(values)), 3),
        "min": round(float(min(values)), 3),
        "max": round(float(max(values)), 3),
        "n": len(values),
    }


def summarise(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per role and cache setting: median and range of each metric for cold and repeated
    calls, the repeated/cold ratio of the median call and prompt times, and whether the
    answers with the cache on equal those with it off."""
    rows: list[dict[str, Any]] = []
    answers: dict[tuple[str, str, int], set[str]] = {}
    for c in calls:
        answers.setdefault((c["cache"], c["role"], c["variant"]), set()).add(c["answer_sha256"])
    for role in ROLES:
        for mode in ("off", "on"):
            kinds: dict[str, dict[str, dict[str, float]]] = {}
            for kind in ("cold", "repeated"):
                chosen = [
                    c
                    for c in calls
                    if c["role"] == role and c["cache"] == mode and c["kind"] == kind
                ]
                if chosen:
                    kinds[kind] = {
                        key: _stat([float(c[key]) for c in chosen]) for key, _ in METRICS
                    }
            if not kinds:
                continue
            row: dict[str, Any] = {"role": role, "cache": mode, **kinds}
            if "cold" in kinds and "repeated" in kinds:
                for key in ("call_seconds", "prompt_seconds"):
                    cold = kinds["cold"][key]["median"]
                    row[f"ratio_{key}"] = (
                        round(kinds["repeated"][key]["median"] / cold, 3) if cold else None
                    )
            rows.append(row)
    for row in rows:
        if row["cache"] != "on":
            continue
        same = [
            answers.get(("on", row["role"], v)) == answers.get(("off", row["role"], v))
            for (mode, role, v) in answers
            if mode == "on" and role == row["role"] and ("off", role, v) in answers
        ]
        row["answers_match_cache_off"] = all(same) if same else None
    return rows


# ------------------------------------------------------------------ markdown and plot
def _cell(stat: Mapping[str, float] | None, digits: int) -> str:
    if not stat:
        return ""
    med, lo, hi = stat["median"], stat["min"], stat["max"]
    if stat.get("n", 1) <= 1 or lo == hi:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def model_speed_markdown(result: Mapping[str, Any]) -> str:
    """The model-speed tables of one result JSON (the file's markdown is exactly this)."""
    config = result["config"]
    rows = result["summary"]
    lines: list[str] = [
        f"# Model speed: local:{config['model']}",
        "",
    ]
    if not result.get("complete", True):
        lines += [
            f"**Partial result: {len(result.get('calls', []))} of "
            f"{result.get('planned_calls')} calls made.**",
            "",
        ]
    lines += [
        f"Started {result['created']}"
        + (f", {result['wall_time'] / 60:.0f} minutes" if result.get("wall_time") else "")
        + ". Real prompts of each role (Crafter manual and skill "
        "API, the nodes' JSON schema or code grammar); each call's last user message differs "
        "from the role's previous call, and the roles take turns (planner, coder, critic, "
        "planner, ...), so the cache must hold a prefix per role. Every round starts a fresh "
        f"server: its first call of each role is cold. {config['rounds']} rounds x "
        f"(1 cold + {config['repeats']} repeated) calls per role and cache setting; answers "
        f"up to {config['max_tokens']} tokens at temperature {config['temperature']}. Cells: "
        "median (min-max). Cache on = "
        f"{config['cache_slots']} saved prefixes; off = `prefix_slots=0`, which still reuses "
        "the prompt left in the model's context by the call before (another role's, here).",
        "",
        "## Call time",
        "",
        "| role | cold, cache off (s) | repeated, cache off (s) | repeated/cold | "
        "cold, cache on (s) | repeated, cache on (s) | repeated/cold |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_key = {(r["role"], r["cache"]): r for r in rows}
    for role in ROLES:
        off, on = by_key.get((role, "off"), {}), by_key.get((role, "on"), {})
        cells = []
        for row in (off, on):
            cells += [
                _cell(row.get("cold", {}).get("call_seconds"), 1),
                _cell(row.get("repeated", {}).get("call_seconds"), 1),
                _ratio(row.get("ratio_call_seconds")),
            ]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Per call",
        "",
        "| role | cache | call | " + " | ".join(title for _, title in METRICS) + " |",
        "| --- | --- | --- |" + " ---: |" * len(METRICS),
    ]
    for row in rows:
        for kind in ("cold", "repeated"):
            stats = row.get(kind)
            if not stats:
                continue
            cells = [
                _cell(stats[key], 0 if key.endswith("tokens") else (2 if "seconds" in key else 1))
                for key, _ in METRICS
            ]
            lines.append(f"| {row['role']} | {row['cache']} | {kind} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Prompt tok/s counts the prompt tokens evaluated (prompt minus cached); a cached "
        "call's prompt time includes restoring the saved prefix. Prompt-time ratio "
        "repeated/cold: "
        + ", ".join(
            f"{r['role']} cache {r['cache']} {_ratio(r.get('ratio_prompt_seconds'))}" for r in rows
        )
        + ".",
    ]
    matches = [
        f"{r['role']} {'yes' if r['answers_match_cache_off'] else 'no'}"
        for r in rows
        if r["cache"] == "on" and r.get("answers_match_cache_off") is not None
    ]
    if matches:
        lines.append(f"Answers identical with and without the cache: {', '.join(matches)}.")
    starts = [s["start_seconds"] for s in result.get("servers", [])]
    if starts:
        lines.append(
            f"Server start (model load): median {statistics.median(starts):.1f} s over "
            f"{len(starts)} starts."
        )
    loads = [s["load_average"][0] for s in result.get("servers", []) if s.get("load_average")]
    if loads:
        lines.append(
            f"1-minute load average at the rounds' starts: {min(loads):.1f} to {max(loads):.1f} "
            f"on {result['machine'].get('cpu_count')} cores."
        )
    lines += ["", "## Prompts", ""]
    for role, probes in result.get("probes", {}).items():
        labels = ", ".join(f"{p['label']} (`{p['messages_sha256']}`)" for p in probes)
        lines.append(f"- {role}: {labels}")
    lines += [*writers.provenance_section(result), ""]
    return "\n".join(lines)


def model_speed_plot(result: Mapping[str, Any], path: Path) -> Path:
    """Bars of the median call time per role (prompt and generation stacked), cold and
    repeated, with the cache off and on; whiskers span the call-time range."""
    import numpy as np

    plt = writers.pyplot()
    rows = {(r["role"], r["cache"]): r for r in result["summary"]}
    series = [("off", "cold"), ("off", "repeated"), ("on", "cold"), ("on", "repeated")]
    colors = {"cold": "#8C8C8C", "repeated": "#4C72B0"}
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(ROLES))
    width = 0.2
    for i, (mode, kind) in enumerate(series):
        prompt: list[float] = []
        gen: list[float] = []
        lo: list[float] = []
        hi: list[float] = []
        for role in ROLES:
            stats = rows.get((role, mode), {}).get(kind)
            if not stats:
                for values in (prompt, gen, lo, hi):
                    values.append(0.0)
                continue
            call = stats["call_seconds"]
            prompt.append(stats["prompt_seconds"]["median"])
            gen.append(stats["generate_seconds"]["median"])
            lo.append(max(0.0, call["median"] - call["min"]))
            hi.append(max(0.0, call["max"] - call["median"]))
        pos = x + (i - 1.5) * width
        hatch = "" if mode == "on" else "//"
        ax.bar(pos, prompt, width, color=colors[kind], hatch=hatch, edgecolor="white",
               label=f"{kind}, cache {mode}: prompt")  # fmt: skip
        ax.bar(pos, gen, width, bottom=prompt, color=colors[kind], alpha=0.45, hatch=hatch,
               edgecolor="white", label=f"{kind}, cache {mode}: generation")  # fmt: skip
        tops = [p + g for p, g in zip(prompt, gen, strict=True)]
        ax.errorbar(pos, tops, yerr=[lo, hi], fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xticks(x, list(ROLES))
    ax.set_ylabel("seconds per call (median)")
    ax.set_title(f"local:{result['config']['model']}: prompt + generation time per call")
    ax.legend(fontsize=6, ncol=2)
    return writers.save_figure(fig, path)


def write_model_speed(result: Mapping[str, Any], out: Path, tag: str) -> dict[str, Path]:
    """Write the JSON, its markdown and the plot; returns their paths by kind."""
    return writers.write_result_files(
        result, out, f"model_speed_{tag}", model_speed_markdown, model_speed_plot
    )
