"""Tasks suite: the full planner/coder/RL/critic loop on a ladder of Crafter tasks and seeds."""

from __future__ import annotations

import json
import statistics
import time
import tomllib
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.tasks")

DEFAULT_TASKS: tuple[str, ...] = (
    "crafter:collect_wood",
    "crafter:place_table",
    "crafter:make_wood_pickaxe",
    "crafter:collect_stone",
    "crafter:make_stone_pickaxe",
    "crafter:place_furnace",
)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
DEFAULT_MODEL = "local:qwen2.5-coder-1.5b"
#: Characters of a failing step's code kept in the result.
CODE_CHARS = 4000

#: What the env-step count of a run covers, and what it leaves out (the state keeps no
#: record of the latter).
ENV_STEPS_COUNTED = (
    "RL jobs: env steps of each training job (every step a code action takes counts)",
    "evaluations: episodes x mean episode length of each held-out evaluation",
    "code checks: per-episode steps of the last check of each code action in the library",
)
ENV_STEPS_NOT_COUNTED = (
    "checks of earlier versions of a code action (the library keeps the latest only)",
    "prelude steps (earlier plan steps replayed before a code check or an RL episode)",
)


@dataclass
class TasksConfig:
    """One tasks-suite invocation: tasks, seeds, the model and the rest of the run context."""

    tasks: list[str] = field(
        default_factory=lambda: list(DEFAULT_TASKS),
        metadata={"description": "Task ids, e.g. crafter:collect_wood."},
    )
    seeds: list[int] = field(
        default_factory=lambda: list(DEFAULT_SEEDS),
        metadata={"description": "Run seeds: each run's Context.seed (the model samples with it)."},
    )
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"description": "Model of the planner, coder and critic (Context form)."},
    )
    context: dict[str, Any] = field(
        default_factory=dict,
        metadata={"description": "Extra Context fields (budgets, plugins, per-role models)."},
    )
    runs_dir: str = field(
        default="runs/bench_tasks",
        metadata={"description": "Where each (task, seed) gets its own runs directory."},
    )

    def model_string(self) -> str:
        """The model as a Context model string (`local:` added to a bare embedded name)."""
        model = self.model.strip()
        return model if ":" in model else f"local:{model}"


# ------------------------------------------------------------------ context
def read_context_file(path: Path) -> dict[str, Any]:
    """Context fields from a JSON object or a TOML file (top level or a `[run]` table)."""
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"cannot read {path}: {exc}") from exc
        table = data.get("run", data)
    else:
        try:
            table = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(table, dict):
        raise ValueError(f"{path} must hold an object of Context fields")
    return {k: v for k, v in table.items() if k != "task"}


def _short(task: str) -> str:
    return task.split(":")[-1]


def run_context(config: TasksConfig, task: str, seed: int, runs_root: Path) -> Any:
    """The Context of one run: the model for every role, full map off and no GIF unless the
    extra fields say otherwise; the seed and runs directory always the suite's."""
    from rlgpt.graph.context import Context

    model = config.model_string()
    values: dict[str, Any] = {
        "planner_model": model,
        "coder_model": model,
        "critic_model": model,
        "privileged": False,
        "gif": False,
        # One library for the suite's runs, in the order they run (seed by seed, task by
        # task): later runs reuse the code actions earlier runs passed, as a user's would.
        "shared_library": str(runs_root / "shared_library"),
        **config.context,
        "seed": seed,
        "runs_dir": str(runs_root / f"{_short(task)}-seed{seed}"),
    }
    ctx = Context.from_mapping(values)
    if ctx.approve_plan or ctx.approve_rl:
        raise ValueError("the tasks suite runs unattended: approve_plan and approve_rl must be off")
    return ctx


# ------------------------------------------------------------------ one run
def invoke_graph(
    task: str, ctx: Any, on_chunk: Callable[[str, Any], None] | None = None
) -> dict[str, Any]:
    """Run the graph on `task` as `rlgpt run` does (a SQLite checkpointer in the runs
    directory, the run's context saved beside it); returns the final state."""
    from langchain_core.runnables import RunnableConfig

    from rlgpt.checkpoint import open_checkpointer
    from rlgpt.graph.builder import builder
    from rlgpt.graph.state import InputState
    from rlgpt.report import atomic_write_text

    thread_id = f"{_short(task)[:24]}-seed{ctx.seed}-{uuid.uuid4().hex[:6]}"
    runs_dir = Path(ctx.runs_dir)
    run_dir = runs_dir / thread_id
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "context.json", json.dumps(ctx.as_dict(), indent=2))
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}, "recursion_limit": 200}
    with open_checkpointer(str(runs_dir / "checkpoints.sqlite")) as saver:
        graph = builder.compile(checkpointer=saver)
        for mode, chunk in graph.stream(
            InputState(task=task), config, context=ctx, stream_mode=["updates", "custom"]
        ):
            if on_chunk is not None:
                on_chunk(str(mode), chunk)
        snapshot = graph.get_state(config)
        if snapshot.interrupts:
            raise RuntimeError(f"run {thread_id} paused for review: {snapshot.interrupts[0].value}")
        return dict(snapshot.values)


def env_steps_of(state: Mapping[str, Any]) -> dict[str, int]:
    """Env steps of a run by where they were spent (see ENV_STEPS_COUNTED), and their sum."""
    rl = sum(int(r.get("env_steps", 0)) for r in state.get("rl_runs") or [])
    evaluation = sum(
        round(int(e.get("episodes", 0)) * float(e.get("mean_length", 0.0)))
        for e in state.get("evaluations") or []
    )
    checks = 0
    for record in (state.get("library") or {}).values():
        if record.get("kind") == "code":
            results = (record.get("check") or {}).get("results") or []
            checks += sum(int(r.get("steps", 0)) for r in results)
    return {"rl_jobs": rl, "evaluations": evaluation, "code_checks": checks,
            "total": rl + evaluation + checks}  # fmt: skip


def llm_usage_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """Model calls, tokens and seconds waited, summed over roles (and per role)."""
    usage: Mapping[str, Mapping[str, Any]] = state.get("usage") or {}
    total: dict[str, Any] = {
        key: sum(u.get(key, 0) for u in usage.values())
        for key in ("calls", "cached_calls", "input_tokens", "output_tokens")
    }
    total["seconds"] = round(sum(float(u.get("seconds", 0.0)) for u in usage.values()), 2)
    total["by_role"] = {
        role: {**u, "seconds": round(float(u.get("seconds", 0.0)), 2)} for role, u in usage.items()
    }
    return total


def _read(path: str, limit: int = CODE_CHARS) -> str:
    try:
        text = Path(path).read_text()
    except OSError:
        return f"(file missing: {path})"
    return text if len(text) <= limit else text[:limit] + "\n# ... (cut)"


def failure_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """Where a run that did not succeed failed: the failing step (the step most episodes of
    the last evaluation stopped at, else the weakest), its code or RL set-up, the last
    failure reason, and the critic's last feedback."""
    plan = state.get("plan") or {}
    steps = [s for s in plan.get("sub_actions", []) if isinstance(s, dict)]
    order = {s.get("id"): i for i, s in enumerate(steps)}
    evaluations = state.get("evaluations") or []
    verdicts = state.get("verdicts") or []
    errors = state.get("errors") or []
    out: dict[str, Any] = {}
    if evaluations:
        last = evaluations[-1]
        failures = last.get("failures") or []
        counts = Counter(f.get("subaction") for f in failures if f.get("subaction"))
        if counts:
            step_id = min(counts, key=lambda s: (-counts[s], order.get(s, len(order))))
        else:
            rates = last.get("subaction_success") or {}
            step_id = min(rates, key=lambda s: (rates[s], order.get(s, 0))) if rates else None
        out["step"] = step_id
        reasons = [f.get("reason", "") for f in failures if f.get("subaction") == step_id]
        if reasons:
            out["reason"] = reasons[0]
        step = next((s for s in steps if s.get("id") == step_id), None)
        if step is not None:
            out["method"] = step.get("method")
            out["predicate"] = step.get("predicate")
            library = state.get("library") or {}
            name = step_id if step.get("method") == "code" else f"{step_id}_policy"
            record = library.get(name)
            if step.get("method") == "code":
                if record is not None:
                    out["code"] = _read(str(record.get("path", "")))
                    check = record.get("check") or {}
                    out["check_success_rate"] = check.get("success_rate")
                else:
                    out["code"] = None
            else:
                out["setup"] = (state.get("setups") or {}).get(str(step_id))
                out["policy"] = record.get("path") if record else None
    else:
        out["step"] = None
        out["reason"] = "no evaluation: " + (
            f"{errors[-1].get('node')}: {errors[-1].get('message', '')[:300]}"
            if errors
            else "no plan was evaluated"
        )
    if verdicts:
        out["critic_feedback"] = verdicts[-1].get("feedback", "")
        out["critic_source"] = verdicts[-1].get("source", "")
        model_verdicts = [v for v in verdicts if v.get("source") == "llm"]
        if model_verdicts and model_verdicts[-1] is not verdicts[-1]:
            out["critic_model_feedback"] = model_verdicts[-1].get("feedback", "")
    if errors:
        out["errors"] = [
            {k: str(e.get(k, ""))[:300] for k in ("node", "kind", "subaction", "message") if k in e}
            for e in errors[-3:]
        ]
    return out


def record_from_state(
    task: str,
    seed: int,
    state: Mapping[str, Any],
    wall_time: float,
    success_threshold: float,
) -> dict[str, Any]:
    """The result record of one finished run."""
    evaluations = state.get("evaluations") or []
    last = evaluations[-1] if evaluations else None
    success = float(last["task_success_rate"]) if last is not None else None
    plan = state.get("plan") or {}
    record: dict[str, Any] = {
        "task": task,
        "seed": seed,
        "status": "finished",
        "success": success,
        "episodes": int(last["episodes"]) if last is not None else 0,
        "solved": success is not None and success >= success_threshold,
        "evaluations": len(evaluations),
        "plan": [
            f"{s.get('id')} ({s.get('method')})"
            for s in plan.get("sub_actions", [])
            if isinstance(s, dict)
        ],
        "rl_jobs": len(state.get("rl_runs") or []),
        "inner_loops": int(state.get("inner_loops", 0) or 0),
        "outer_loops": int(state.get("outer_loops", 0) or 0),
        "llm": llm_usage_of(state),
        "env_steps": env_steps_of(state),
        "wall_time": round(wall_time, 1),
        "run_dir": str(state.get("run_dir", "")),
        "report": str(state.get("report_path", "")),
        "errors": len(state.get("errors") or []),
    }
    if not record["solved"]:
        record["failure"] = failure_of(state)
    return record


def crashed_record(
    task: str, seed: int, exc: BaseException, wall_time: float, run_dir: str
) -> dict[str, Any]:
    """The record of a run that raised instead of finishing."""
    return {
        "task": task,
        "seed": seed,
        "status": "crashed",
        "success": None,
        "episodes": 0,
        "solved": False,
        "error": f"{type(exc).__name__}: {exc}"[:1000],
        "traceback": "".join(traceback.format_exception(exc))[-3000:],
        "wall_time": round(wall_time, 1),
        "run_dir": run_dir,
    }


# ------------------------------------------------------------------ aggregate
def run_success(run: Mapping[str, Any]) -> float:
    """A run's task success; a run with no evaluation (or that crashed) counts as 0."""
    value = run.get("success")
    return float(value) if value is not None else 0.0


def _mean(runs: Sequence[Mapping[str, Any]], get: Callable[[Mapping[str, Any]], Any]) -> float:
    return round(statistics.fmean(float(get(r)) for r in runs), 2)


def aggregate(runs: Sequence[Mapping[str, Any]], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """Per task (in the given order, then any other task found): mean success over its runs,
    n, per-seed values, solved runs, and the mean cost of a run."""
    order = list(dict.fromkeys([*tasks, *(r["task"] for r in runs)]))
    rows: list[dict[str, Any]] = []
    for task in order:
        chosen = sorted((r for r in runs if r["task"] == task), key=lambda r: r["seed"])
        if not chosen:
            continue
        values = [run_success(r) for r in chosen]
        rows.append(
            {
                "task": task,
                "n": len(chosen),
                "mean_success": round(statistics.fmean(values), 4),
                "per_seed": {str(r["seed"]): run_success(r) for r in chosen},
                "solved": sum(bool(r.get("solved")) for r in chosen),
                "crashed": sum(r.get("status") == "crashed" for r in chosen),
                "no_evaluation": sum(
                    r.get("status") == "finished" and r.get("success") is None for r in chosen
                ),
                "mean_wall_time": _mean(chosen, lambda r: r.get("wall_time", 0.0)),
                "mean_llm_calls": _mean(chosen, lambda r: (r.get("llm") or {}).get("calls", 0)),
                "mean_llm_seconds": _mean(
                    chosen, lambda r: (r.get("llm") or {}).get("seconds", 0.0)
                ),
                "mean_env_steps": _mean(
                    chosen, lambda r: (r.get("env_steps") or {}).get("total", 0)
                ),
            }
        )
    return rows


def comparison_of(previous: Mapping[str, Any], source: str) -> dict[str, Any]:
    """What a result keeps of an earlier tasks result to show it as "before"."""
    if previous.get("suite") != "tasks":
        raise ValueError(f"{source} is not a tasks result (suite {previous.get('suite')!r})")
    rows = previous.get("aggregate") or aggregate(
        previous.get("runs", []), previous.get("config", {}).get("tasks", [])
    )
    return {
        "file": Path(source).name,
        "created": previous.get("created", ""),
        "model": (previous.get("config") or {}).get("model", ""),
        "aggregate": {
            r["task"]: {k: r[k] for k in ("mean_success", "n", "per_seed", "solved")} for r in rows
        },
    }


# ------------------------------------------------------------------ markdown and plot
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _success_cell(run: Mapping[str, Any]) -> str:
    if run.get("status") == "crashed":
        return "crashed"
    if run.get("success") is None:
        return "no evaluation"
    return f"{_pct(run['success'])} of {run.get('episodes', 0)}"


def tasks_markdown(result: Mapping[str, Any]) -> str:
    """The tasks tables of one result JSON (the file's markdown is exactly this)."""
    from rlgpt.bench.writers import provenance_lines

    config = result["config"]
    ctx = config.get("effective_context") or {}
    runs = result.get("runs", [])
    compare = result.get("compare")
    lines = [
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
    before = (compare or {}).get("aggregate", {})
    head = "| task | mean success | n | per seed | solved |"
    rule = "| --- | ---: | ---: | --- | ---: |"
    if compare:
        head += " before |"
        rule += " ---: |"
    head += " wall s / run | LLM calls / run | LLM s / run | env steps / run |"
    rule += " ---: | ---: | ---: | ---: |"
    lines += [head, rule]
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
    lines += [
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
    lines += [
        "",
        "Env steps counted: " + "; ".join(ENV_STEPS_COUNTED) + ". Not counted (not recorded "
        "in the run's state): " + "; ".join(ENV_STEPS_NOT_COUNTED) + ".",
    ]
    failed = [r for r in runs if not r.get("solved")]
    if failed:
        lines += ["", "## Runs that did not succeed", ""]
    for run in failed:
        lines.append(f"### {run['task']}, seed {run['seed']}: {_success_cell(run)}")
        lines.append("")
        if run.get("status") == "crashed":
            lines += [f"The run raised `{run.get('error', '')}`.", ""]
            continue
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
                f"- error: {error.get('node', '')} {error.get('kind', '')}: "
                f"{error.get('message', '')}"
            )
        if failure.get("code"):
            lines += ["", "```python", failure["code"].rstrip(), "```"]
        elif failure.get("method") == "code":
            lines.append("- no code action was written for it")
        if failure.get("setup") is not None:
            lines += ["", f"RL set-up: `{json.dumps(failure['setup'])}`"]
        lines.append("")
    lines += ["", "## Provenance", "", *provenance_lines(result)]
    for i, inv in enumerate(result.get("invocations", [])[:-1]):
        git = inv.get("git") or {}
        lines.append(
            f"- earlier invocation {i + 1} ({inv.get('created', '')}): commit "
            f"`{git.get('commit', '')}`"
            + (f", diff sha256 {git['diff_sha256']}" if git.get("diff_sha256") else "")
            + f", {sum(1 for r in runs if r.get('invocation') == i)} run(s)"
        )
    lines.append("")
    return "\n".join(lines)


def tasks_plot(result: Mapping[str, Any], path: Path) -> Path:
    """Bars of mean success per task (beside the "before" result when there is one), with
    each seed's success as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result.get("aggregate", [])
    compare = result.get("compare")
    names = [_short(r["task"]) for r in rows]
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_tasks(result: dict[str, Any], out: Path, tag: str) -> dict[str, Path]:
    """Write the JSON, its markdown and the plot; returns their paths by kind."""
    from rlgpt.bench import writers

    result["aggregate"] = aggregate(result.get("runs", []), result["config"]["tasks"])
    paths = {"json": writers.write_json(out / f"tasks_{tag}.json", result)}
    md = out / f"tasks_{tag}.md"
    writers.atomic_write_text(md, tasks_markdown(result))
    paths["markdown"] = md
    paths["png"] = tasks_plot(result, out / f"tasks_{tag}.png")
    return paths


# ------------------------------------------------------------------ suite
def _invocation(head: Mapping[str, Any]) -> dict[str, Any]:
    return {k: head[k] for k in ("created", "git", "command", "machine") if k in head}


def resume_runs(previous: Mapping[str, Any], config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The finished runs of an earlier result of the same model and context (crashed runs
    are dropped, so they run again)."""
    old = previous.get("config") or {}
    for key in ("model", "context"):
        if old.get(key) != config.get(key):
            raise ValueError(
                f"cannot resume: the earlier result has {key} {old.get(key)!r}, this "
                f"invocation {config.get(key)!r}; pass another --tag"
            )
    return [dict(r) for r in previous.get("runs", []) if r.get("status") == "finished"]


def run_tasks(
    config: TasksConfig,
    out: Path,
    tag: str,
    *,
    resume: bool = False,
    compare: Path | None = None,
    invoke: Callable[[str, Any, Callable[[str, Any], None] | None], dict[str, Any]] = invoke_graph,
) -> dict[str, Path]:
    """Run every (task, seed) pair not yet done, seed by seed, writing the result files
    after each run; returns the paths of the files.

    Args:
        config: Tasks, seeds, model and extra context.
        out: Results directory.
        tag: Suffix of the file names.
        resume: Keep the finished runs of an existing `tasks_<tag>.json` and skip them.
        compare: An earlier tasks result to show as "before".
        invoke: Runs one graph run and returns its final state (replaced in tests).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rlgpt.bench import writers
    from rlgpt.envs.base import load_adapter

    runs_root = Path(config.runs_dir)
    contexts = {
        (task, seed): run_context(config, task, seed, runs_root)
        for seed in config.seeds
        for task in config.tasks
    }
    for (task, _), ctx in contexts.items():
        load_adapter(ctx.env).task(task)  # an unknown task fails before any run
    first = next(iter(contexts.values()))
    effective = {k: v for k, v in first.as_dict().items() if k not in ("seed", "runs_dir")}
    suite_config = {
        "tasks": list(config.tasks),
        "seeds": list(config.seeds),
        "model": config.model_string(),
        "context": dict(config.context),
        "runs_dir": str(runs_root),
        "effective_context": effective,
    }
    head = writers.envelope("tasks", suite_config)
    path = out / f"tasks_{tag}.json"
    runs: list[dict[str, Any]] = []
    invocations: list[dict[str, Any]] = []
    if resume and path.exists():
        previous = json.loads(path.read_text())
        runs = resume_runs(previous, suite_config)
        invocations = list(previous.get("invocations", []))
    invocations.append(_invocation(head))
    result: dict[str, Any] = {**head, "invocations": invocations, "runs": runs}
    if compare is not None:
        result["compare"] = comparison_of(json.loads(compare.read_text()), str(compare))
    rank = {task: i for i, task in enumerate(config.tasks)}
    done = {(r["task"], r["seed"]) for r in runs}
    pending = [pair for pair in contexts if pair not in done]
    log.info("tasks_suite", pending=len(pending), done=len(done), runs_dir=str(runs_root))
    paths = write_tasks(result, out, tag)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        bar = progress.add_task("runs", total=len(pending))
        for task, seed in pending:
            ctx = contexts[(task, seed)]
            label = f"{_short(task)} seed {seed}"
            progress.update(bar, description=f"{label}: starting")

            def on_chunk(mode: str, chunk: Any, label: str = label) -> None:
                if mode == "updates" and isinstance(chunk, dict):
                    progress.update(bar, description=f"{label}: {', '.join(chunk)} done")
                elif (
                    mode == "custom"
                    and isinstance(chunk, dict)
                    and chunk.get("event") == "rl_progress"
                ):
                    progress.update(
                        bar,
                        description=f"{label}: RL {chunk.get('env_steps', 0):,}/"
                        f"{chunk.get('budget', 0):,} steps",
                    )

            started = time.monotonic()
            try:
                state = invoke(task, ctx, on_chunk)
                record = record_from_state(
                    task, seed, state, time.monotonic() - started, ctx.success_threshold
                )
            except Exception as exc:  # one broken run must not end a long bench
                log.error("tasks_run_crashed", task=task, seed=seed, error=repr(exc))
                record = crashed_record(task, seed, exc, time.monotonic() - started, ctx.runs_dir)
            record["invocation"] = len(invocations) - 1
            runs[:] = [r for r in runs if (r["task"], r["seed"]) != (task, seed)] + [record]
            runs.sort(key=lambda r: (rank.get(r["task"], len(rank)), r["seed"]))
            paths = write_tasks(result, out, tag)
            log.info(
                "tasks_run_done",
                task=task,
                seed=seed,
                status=record["status"],
                success=record.get("success"),
                wall_time=record.get("wall_time"),
            )
            progress.advance(bar)
    return paths
