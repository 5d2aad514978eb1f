"""`rlgpt runs` (past runs, newest first) and `rlgpt runs compare A B` (two runs side by side).

Runs are read from their folders under the runs directory and from the checkpointer
(`rlgpt.run_records`); nothing is written. Exit codes: 0 listed or compared, 2 bad input
(an unknown run id, a missing runs directory or checkpoint file).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rlgpt.checkpoint import CheckpointerUnavailable
from rlgpt.graph.context import Context
from rlgpt.logging import get_logger
from rlgpt.run_records import (
    MODEL_ROLES,
    STATUS_LABELS,
    WALL_TIME_HELP,
    RunNotFoundError,
    RunRecord,
    RunStore,
)

log = get_logger("runs")

_STATUS_COLOURS = {
    "finished": "green",
    "paused": "yellow",
    "interrupted": "yellow",
    "model_error": "red",
    "disk_full": "red",
    "failed": "red",
}


def _add_source_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """--runs-dir, --checkpointer and --json; `default` is argparse.SUPPRESS on the
    `compare` subparser, so flags given before `compare` are not reset by it."""
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=default,
        help=f"Runs directory (default: {Context().runs_dir!r}, as `rlgpt run`).",
    )
    parser.add_argument(
        "--checkpointer",
        metavar="PATH_OR_URL",
        default=default,
        help="SQLite file or postgresql:// URL the runs were checkpointed to (default: "
        "<runs-dir>/checkpoints.sqlite, read only if it exists).",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default if default is argparse.SUPPRESS else False,
        help="Print JSON on stdout instead of tables.",
    )


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `rlgpt runs [compare A B]` to the `runs` (sub)parser."""
    parser.description = (
        "List past runs, newest first: id, task, models, task success and score of the last "
        "evaluation, env steps, model time, wall time and status (finished, paused for "
        "review, stopped: model error / disk full / error, running or interrupted, no "
        f"checkpoint). {WALL_TIME_HELP}"
    )
    _add_source_flags(parser, None)
    sub = parser.add_subparsers(dest="runs_command", metavar="{compare}")
    compare = sub.add_parser(
        "compare",
        help="Show two runs side by side.",
        description="Two runs side by side: their results, the plan (each sub-action's "
        "method and success in the last evaluation), a unified diff of each code action's "
        "source and the model usage per role. A and B are run ids (or a unique start of "
        f"one, or the path of a run folder). {WALL_TIME_HELP}",
    )
    compare.add_argument("a", metavar="A", help="The first run.")
    compare.add_argument("b", metavar="B", help="The second run.")
    _add_source_flags(compare, argparse.SUPPRESS)


def run_runs_command(args: argparse.Namespace) -> int:
    """`rlgpt runs [compare A B]`: 0 done, 2 bad input."""
    runs_dir = Path(args.runs_dir if args.runs_dir is not None else Context().runs_dir)
    try:
        with RunStore(runs_dir, args.checkpointer) as store:
            if getattr(args, "runs_command", None) == "compare":
                a, b = store.find(args.a), store.find(args.b)
                comparison = compare_runs(a, b)
                if args.json:
                    _write_json(comparison)
                else:
                    print_comparison(a, b, comparison, _stdout())
                return 0
            records = store.records()
    except (RunNotFoundError, CheckpointerUnavailable) as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 2
    log.debug("runs_listed", runs_dir=str(runs_dir), runs=len(records))
    if args.json:
        _write_json([r.summary() for r in records])
    else:
        print_runs(records, runs_dir, _stdout())
    return 0


def _write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------ formatting


def percent(value: float | None) -> str:
    """`0.75` -> `75%`; `-` when unknown."""
    return "-" if value is None else f"{value:.0%}"


def duration(seconds: float | None) -> str:
    """Seconds as `4.2s`, `3m05s` or `2h07m`; `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _stdout() -> Console:
    """The console tables print to: the terminal's width (or $COLUMNS), else a wide page
    when piped (rich would fold every cell to 80 columns); machines read `--json`."""
    out = Console()
    return out if out.is_terminal or os.environ.get("COLUMNS") else Console(width=200)


def models_text(record: RunRecord) -> str:
    """The models in one short line: roles sharing a model are named together, and a role
    whose plugin is not the model-calling `llm` one names its plugin instead."""
    by_model: dict[str, list[str]] = {}
    others = []
    plugins = record.plugins
    for role, model in record.models.items():
        plugin = plugins.get(role, "llm")
        if plugin != "llm":
            others.append(f"{role}: {plugin}")
        else:
            by_model.setdefault(model, []).append(role)
    if len(by_model) == 1 and not others:
        return next(iter(by_model))
    parts = [f"{model} ({', '.join(roles)})" for model, roles in by_model.items()]
    return "; ".join(parts + others) or "-"


def status_text(record: RunRecord) -> str:
    """The status label, coloured (rich markup)."""
    colour = _STATUS_COLOURS.get(record.status, "white")
    return f"[{colour}]{escape(STATUS_LABELS.get(record.status, record.status))}[/]"


def _steps(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _short(text: str, limit: int = 80) -> str:
    """A status detail cut for a table cell (`--json` keeps it whole)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(record: RunRecord) -> str:
    return record.started.strftime("%Y-%m-%d %H:%M:%S UTC") if record.started else "-"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_runs(records: list[RunRecord], runs_dir: Path, out: Console) -> None:
    """The runs as a table, newest first."""
    if not records:
        out.print(f"no runs under {escape(str(runs_dir))}")
        return
    table = Table(title=f"runs under {escape(str(runs_dir))}", title_justify="left")
    table.add_column("run", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("models", overflow="fold")
    for name in ("success", "score", "env steps", "model time", "wall time"):
        table.add_column(name, justify="right")
    table.add_column("status", overflow="fold")
    for r in records:
        table.add_row(
            escape(r.id),
            escape(r.task or "-"),
            escape(models_text(r)),
            percent(r.task_success),
            _score(r.score),
            _steps(r.env_steps),
            duration(r.model_seconds),
            duration(r.wall_seconds),
            status_text(r) + (f" ({escape(_short(r.detail))})" if r.detail else ""),
        )
    out.print(table)


# ------------------------------------------------------------------------------ compare


def predicate_text(predicate: dict[str, Any] | None) -> str:
    """A sub-action's success check in words, as the report writes it."""
    if not predicate:
        return "-"
    if predicate.get("kind") == "achievement":
        return f"achievement {predicate.get('name')}"
    return f"{predicate.get('name')} >= {predicate.get('at_least', 1)}"


def plan_steps(record: RunRecord) -> dict[str, dict[str, Any]]:
    """The run's plan, step id -> method, check, description and success in the last
    evaluation (None when it was not evaluated)."""
    plan = record.state.get("plan") or {}
    last = record.last_evaluation or {}
    success = last.get("subaction_success") or {}
    return {
        str(step["id"]): {
            "method": step.get("method"),
            "predicate": predicate_text(step.get("predicate")),
            "description": step.get("description", ""),
            "success": success.get(step["id"]),
        }
        for step in plan.get("sub_actions") or []
    }


def code_diffs(a: RunRecord, b: RunRecord) -> list[dict[str, Any]]:
    """Per code action of either run: its version in each and a unified diff of the sources."""
    code_a, code_b = a.code_actions(), b.code_actions()
    out = []
    for name in [*code_a, *(n for n in code_b if n not in code_a)]:
        left, right = code_a.get(name), code_b.get(name)
        source_a = (left or {}).get("source") or ""
        source_b = (right or {}).get("source") or ""
        diff = difflib.unified_diff(
            source_a.splitlines(keepends=True),
            source_b.splitlines(keepends=True),
            fromfile=f"{a.id}/{name}.py",
            tofile=f"{b.id}/{name}.py",
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in diff)
        out.append(
            {
                "name": name,
                "a": _side(left),
                "b": _side(right),
                "same": left is not None and right is not None and source_a == source_b,
                "diff": text,
            }
        )
    return out


def _side(code: dict[str, Any] | None) -> dict[str, Any] | None:
    if code is None:
        return None
    return {
        "version": code["version"],
        "subaction": code["subaction"],
        "path": code["path"],
        "found": code["source"] is not None,
    }


def compare_runs(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    """Everything `rlgpt runs compare` shows, as one JSON object."""
    steps_a, steps_b = plan_steps(a), plan_steps(b)
    ids = [*steps_a, *(s for s in steps_b if s not in steps_a)]
    return {
        "a": a.summary(),
        "b": b.summary(),
        "plan": [{"id": s, "a": steps_a.get(s), "b": steps_b.get(s)} for s in ids],
        "code_actions": code_diffs(a, b),
        "usage": {"a": a.usage, "b": b.usage},
    }


def print_comparison(a: RunRecord, b: RunRecord, comparison: dict[str, Any], out: Console) -> None:
    """The comparison as tables and diffs."""
    runs = Table(title="runs", title_justify="left")
    runs.add_column("")
    runs.add_column(f"A: {escape(a.id)}", overflow="fold")
    runs.add_column(f"B: {escape(b.id)}", overflow="fold")
    rows: list[tuple[str, str, str]] = [
        ("task", escape(a.task or "-"), escape(b.task or "-")),
        ("status", status_text(a), status_text(b)),
        ("models", escape(models_text(a)), escape(models_text(b))),
        ("task success", percent(a.task_success), percent(b.task_success)),
        ("score", _score(a.score), _score(b.score)),
        ("env steps", _steps(a.env_steps), _steps(b.env_steps)),
        ("model time", duration(a.model_seconds), duration(b.model_seconds)),
        ("wall time", duration(a.wall_seconds), duration(b.wall_seconds)),
        ("started", _when(a), _when(b)),
        ("evaluations", str(len(a.evaluations)), str(len(b.evaluations))),
    ]
    for row in rows:
        runs.add_row(*row)
    out.print(runs)

    plan = Table(title="plan (success: last evaluation)", title_justify="left")
    for name in ("sub-action", "A method", "A check", "A success"):
        plan.add_column(name, overflow="fold")
    for name in ("B method", "B check", "B success"):
        plan.add_column(name, overflow="fold")
    for step in comparison["plan"]:
        cells = [escape(step["id"])]
        for side in (step["a"], step["b"]):
            if side is None:
                cells += ["-", "not in plan", "-"]
            else:
                cells += [
                    escape(str(side["method"])),
                    escape(side["predicate"]),
                    percent(side["success"]),
                ]
        plan.add_row(*cells)
    if not comparison["plan"]:
        plan.add_row("no plan in either run", *["-"] * 6)
    out.print(plan)

    out.print("[bold]code actions[/]")
    if not comparison["code_actions"]:
        out.print("  none in either run")
    for code in comparison["code_actions"]:
        out.print(_code_heading(code), soft_wrap=True)
        if code["same"]:
            continue
        for line in code["diff"].splitlines():
            colour = _diff_colour(line)
            text = escape(line)
            out.print(f"[{colour}]{text}[/]" if colour else text, soft_wrap=True, highlight=False)

    usage = Table(title="model usage", title_justify="left")
    usage.add_column("role")
    for side in ("A", "B"):
        for name in ("calls", "tokens in/out", "seconds"):
            usage.add_column(f"{side} {name}", justify="right")
    roles = sorted({*comparison["usage"]["a"], *comparison["usage"]["b"]}, key=_role_order)
    for role in roles:
        cells = [escape(role)]
        for side in ("a", "b"):
            u = comparison["usage"][side].get(role)
            if u is None:
                cells += ["-", "-", "-"]
            else:
                cells += [
                    str(u.get("calls", 0)),
                    f"{u.get('input_tokens', 0):,}/{u.get('output_tokens', 0):,}",
                    f"{float(u.get('seconds', 0.0)):.1f}",
                ]
        usage.add_row(*cells)
    out.print(usage)


def _code_heading(code: dict[str, Any]) -> str:
    left, right = code["a"], code["b"]
    versions = f"A v{left['version'] if left else '-'}, B v{right['version'] if right else '-'}"
    if left is None or right is None:
        where = "B" if left is None else "A"
        return f"  [bold]{escape(code['name'])}[/] ({versions}): only in {where}"
    missing = [side for side, c in (("A", left), ("B", right)) if not c["found"]]
    if missing:
        return (
            f"  [bold]{escape(code['name'])}[/] ({versions}): source file missing in "
            f"{' and '.join(missing)}"
        )
    return f"  [bold]{escape(code['name'])}[/] ({versions}): " + (
        "same source" if code["same"] else "differs"
    )


def _diff_colour(line: str) -> str | None:
    if line.startswith(("+++", "---")):
        return "bold"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    if line.startswith("@@"):
        return "cyan"
    return None


def _role_order(role: str) -> tuple[int, str]:
    order = [*MODEL_ROLES]
    return (order.index(role) if role in order else len(order), role)
