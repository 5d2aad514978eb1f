"""The tasks suite's records: a run's record from its final state, and the per-task aggregate."""

from __future__ import annotations

import statistics
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Characters of a failing step's code kept in the result.
CODE_CHARS = 4000

#: What the env-step count of a run covers, and what it leaves out (the state keeps no
#: record of the latter).
ENV_STEPS_COUNTED = (
    "RL jobs: env steps of each training job (every step a code action takes counts)",
    "evaluations: episodes x mean episode length of each held-out evaluation",
    "code checks: per-episode steps of the last check of each code action in the library",
)
#: What a run's own ledger counts (runs since the state kept one).
ENV_STEPS_LEDGER = (
    "every env step of the run: each code check (earlier versions and their preludes "
    "included), each RL job with its preludes, each evaluation"
)
ENV_STEPS_NOT_COUNTED = (
    "checks of earlier versions of a code action (the library keeps the latest only)",
    "prelude steps (earlier plan steps replayed before a code check or an RL episode)",
)


def task_name(task: str) -> str:
    """A task id without its env prefix (`crafter:collect_wood` -> `collect_wood`)."""
    return task.split(":")[-1]


# ------------------------------------------------------------------ one run
def env_steps_of(state: Mapping[str, Any]) -> dict[str, int]:
    """Env steps of a run by where they were spent, and their sum.

    A run's own ledger (`state["env_steps"]`) counts every step: each code check, the RL jobs
    with their preludes, each evaluation. States written before it existed are estimated
    from their records (see ENV_STEPS_COUNTED), which miss earlier checks and preludes.
    """
    ledger: Mapping[str, int] | None = state.get("env_steps")
    if ledger is not None:
        rl_jobs = int(ledger.get("rl", 0)) + int(ledger.get("rl_prelude", 0))
        evaluations, code_checks = (
            int(ledger.get("evaluation", 0)),
            int(ledger.get("code_check", 0)),
        )
        total = rl_jobs + evaluations + code_checks
        return {"rl_jobs": rl_jobs, "evaluations": evaluations, "code_checks": code_checks,
                "total": total, "every_step": True}  # fmt: skip
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
            weak = [s for s in rates if rates[s] < 1.0]
            step_id = min(weak, key=lambda s: (rates[s], order.get(s, 0))) if weak else None
        out["step"] = step_id
        if step_id is None:
            out["reason"] = "every step succeeded in every episode, yet the task did not"
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
