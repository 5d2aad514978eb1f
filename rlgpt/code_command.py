"""`rlgpt code check FILE --task T`: a code action file through the coder's own check.

The check is `check_code_action`, called as the coder node calls it (same sandbox, limits
from the run settings, earlier actions of a library as the prelude), so what a user sees
here is what the coder sees. Exit codes: 0 every seed succeeded, 1 the check ran but some
seed failed or the code was rejected, 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from rlgpt.actions.library import MANIFEST, ActionLibrary, LibraryError
from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.envs.base import (
    EnvAdapter,
    EnvSettings,
    Predicate,
    TaskSpec,
    UnknownTaskError,
    load_adapter,
    unavailable_reason,
)
from rlgpt.graph.context import ConfigError, Context
from rlgpt.plugins import PluginNotFoundError
from rlgpt.tools.code_check import check_code_action

#: `--predicate` forms: `achievement:NAME`, `inventory:ITEM` or `inventory:ITEM>=N`.
_PREDICATE = re.compile(r"^(achievement|inventory):([A-Za-z0-9_]+)(?:\s*>=\s*(\d+))?$")
#: `--predicate` value that makes run()'s own return value the success condition.
RETURNED = "returned"

PREDICATE_HELP = (
    "Success condition instead of the task's goal: `achievement:NAME`, `inventory:ITEM` "
    "(at least 1), `inventory:ITEM>=N`, or `returned` (run() returning True). Default: the "
    "task's goal; for a task without a single goal (crafter:score) `returned`."
)


class CodeCheckInputError(ValueError):
    """Bad input to `rlgpt code check` (missing file, unknown task, malformed flag): exit 2."""


@dataclass(frozen=True)
class CodeCheck:
    """One check to run: the code, where it runs and what counts as success."""

    file: Path
    name: str
    source: str
    task: TaskSpec
    predicate: Predicate | None
    seeds: list[int]
    library_dir: Path | None
    prelude: list[str]
    limits: SandboxLimits
    settings: EnvSettings

    def describe(self) -> dict[str, Any]:
        """What was checked, for the JSON output."""
        return {
            "file": str(self.file),
            "name": self.name,
            "task": self.task.name,
            "seeds": self.seeds,
            "predicate": self.predicate.model_dump() if self.predicate else None,
            "library": str(self.library_dir) if self.library_dir else None,
            "prelude": self.prelude,
            "limits": self.limits.as_dict(),
            "episode_length": self.settings.episode_length,
            "privileged": self.settings.privileged,
        }


def add_code_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `rlgpt code check` to the `code` (sub)parser."""
    sub = parser.add_subparsers(dest="code_command", required=True)
    check = sub.add_parser(
        "check",
        help="Run a code action file through the coder's sandbox and check on real episodes.",
        description="Run FILE (defining `run(api)`, optionally `available(api)`) once per seed "
        "on real episodes of TASK, in the same sandbox, limits and check the coder uses. Exit "
        "0: every seed succeeded; 1: some seed failed or the code was rejected; 2: bad input.",
    )
    check.add_argument("file", type=Path, metavar="FILE", help="Python file of the code action.")
    check.add_argument(
        "--task", required=True, help="Task id, e.g. crafter:collect_wood (see `rlgpt tasks`)."
    )
    check.add_argument(
        "--seeds", default="0,1,2", help="Comma-separated episode seeds (default 0,1,2)."
    )
    check.add_argument(
        "--json",
        action="store_true",
        help="Print one JSON object (the check's result and what was checked) on stdout.",
    )
    check.add_argument("--name", help="The action's name (default: the file's stem).")
    check.add_argument(
        "--library",
        type=Path,
        metavar="DIR",
        help="Action library whose actions the code may call and the prelude runs "
        "(a run's <runs-dir>/<run>/library).",
    )
    check.add_argument(
        "--prelude",
        metavar="A,B",
        help="Library actions run first on every episode, as earlier plan steps (needs --library).",
    )
    check.add_argument("--predicate", metavar="SPEC", help=PREDICATE_HELP)
    defaults = Context()
    check.add_argument(
        "--max-steps",
        type=int,
        metavar="N",
        help=f"Env-step budget of the call (default {defaults.code_action_max_steps}).",
    )
    check.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help=f"Wall-time budget of the call (default {defaults.code_action_seconds}).",
    )
    check.add_argument(
        "--episode-length",
        type=int,
        metavar="N",
        help="Steps after which an episode ends (default: as in a run of the prelude steps "
        f"and this one, {defaults.subaction_max_steps} x (2 + prelude actions)).",
    )
    check.add_argument(
        "--privileged", action="store_true", help="Let the code read the full world map."
    )


def run_code_command(args: argparse.Namespace) -> int:
    """`rlgpt code <command>`: 0 every seed succeeded, 1 a failure, 2 bad input."""
    try:
        check = build_check(args)
    except CodeCheckInputError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 2
    if args.json:
        with _stdout_to_stderr():
            result = run_check(check)
        sys.stdout.write(json.dumps({**result, **check.describe()}, default=str) + "\n")
        sys.stdout.flush()
    else:
        result = run_check(check)
        print_result(check, result, Console())
    return 0 if passed(check, result) else 1


def build_check(args: argparse.Namespace) -> CodeCheck:
    """The check the flags ask for; CodeCheckInputError on anything malformed."""
    file: Path = args.file
    try:
        source = file.read_text()
    except FileNotFoundError:
        raise CodeCheckInputError(f"no code action file {str(file)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CodeCheckInputError(f"cannot read {str(file)!r}: {exc}") from None
    task, adapter = _task(args.task)
    prelude = _names(args.prelude)
    library_dir = _library(args.library, prelude)
    # Through Context, so the defaults and bounds are a run's own.
    limits = {"code_action_max_steps": args.max_steps, "code_action_seconds": args.seconds}
    try:
        ctx = Context.from_mapping({k: v for k, v in limits.items() if v is not None})
    except ConfigError as exc:
        raise CodeCheckInputError(str(exc)) from None
    # As the coder: episodes long enough for a plan of the prelude steps plus this one.
    length = args.episode_length
    if length is None:
        length = ctx.subaction_max_steps * (2 + len(prelude))
    if length < 1:
        raise CodeCheckInputError(f"--episode-length must be at least 1, got {length}")
    return CodeCheck(
        file=file,
        name=args.name or file.stem,
        source=source,
        task=task,
        predicate=parse_predicate(args.predicate, task, adapter),
        seeds=parse_seeds(args.seeds),
        library_dir=library_dir,
        prelude=prelude,
        limits=ctx.sandbox_limits(),
        settings=EnvSettings(episode_length=length, privileged=bool(args.privileged)),
    )


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` -> [0, 1, 2]; seeds are non-negative integers."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise CodeCheckInputError(
            f"--seeds takes comma-separated integers such as 0,1,2, got {text!r}"
        ) from None
    if any(seed < 0 for seed in seeds):
        raise CodeCheckInputError(f"--seeds must be non-negative, got {text!r}")
    return seeds


def parse_predicate(text: str | None, task: TaskSpec, adapter: EnvAdapter) -> Predicate | None:
    """The success condition: `text` (see PREDICATE_HELP) or the task's own goal; None means
    run()'s return value decides, as check_code_action does with no predicate."""
    if text is None:
        if task.score or not task.predicates:
            return None
        if len(task.predicates) > 1:
            # check_code_action takes one condition; guessing which one would mislead.
            goals = ", ".join(p.describe() for p in task.predicates)
            raise CodeCheckInputError(
                f"task {task.name} has several goals ({goals}); pick one with --predicate"
            )
        return task.predicates[0]
    if text.strip() == RETURNED:
        return None
    match = _PREDICATE.match(text.strip())
    if match is None:
        raise CodeCheckInputError(f"malformed --predicate {text!r}. {PREDICATE_HELP}")
    kind, name, count = match.groups()
    if kind == "achievement" and count is not None:
        raise CodeCheckInputError(f"malformed --predicate {text!r}: `>=` is for inventory only")
    # A misspelt name would never hold and look like failing code: refuse it up front.
    known = adapter.vocabulary().get("achievements" if kind == "achievement" else "items", [])
    if known and name not in known:
        raise CodeCheckInputError(
            f"--predicate names unknown {kind} {name!r}; known: {', '.join(known)}"
        )
    try:
        return Predicate.model_validate({"kind": kind, "name": name, "at_least": int(count or 1)})
    except ValidationError as exc:
        raise CodeCheckInputError(
            f"malformed --predicate {text!r}: {exc.errors()[0]['msg']}"
        ) from None


def run_check(check: CodeCheck) -> dict[str, Any]:
    """The coder's check of the code (see `LLMCoder._check`)."""
    return check_code_action(
        source=check.source,
        name=check.name,
        predicate=check.predicate,
        task=check.task,
        library_dir=check.library_dir,
        prelude=check.prelude,
        seeds=check.seeds,
        limits=check.limits,
        settings=check.settings,
    )


def passed(check: CodeCheck, result: Mapping[str, Any]) -> bool:
    """True when an episode ran for every seed and each succeeded."""
    episodes = int(result.get("episodes", 0))
    results = result.get("results") or []
    return (
        episodes == len(check.seeds) == len(results)
        and int(result.get("successes", 0)) == episodes
        and all(r.get("success") for r in results)
    )


# Fields of a seed's result, an error and the summary shown in their own words; any other
# field check_code_action adds is shown as `key=value`.
_SEED_FIELDS = {"seed", "success", "returned_true", "steps", "reason", "trace", "inventory"}
_SEED_FIELDS |= {"prelude_ok", "prelude_steps", "interrupted"}
_ERROR_FIELDS = {"kind", "message", "line", "step", "seed", "action"}
_SUMMARY_FIELDS = {"success_rate", "successes", "episodes", "mean_steps", "errors", "results"}
_SUMMARY_FIELDS |= {"returned_true_rate", "env_steps"}


def print_result(check: CodeCheck, result: Mapping[str, Any], out: Console) -> None:
    """Human-readable result: one line per seed, then every error, then the summary."""
    goal = check.predicate.describe() if check.predicate else "run() returns True"
    prelude = f", after {', '.join(check.prelude)}" if check.prelude else ""
    seeds = ", ".join(str(s) for s in check.seeds)
    out.print(
        f"[bold]{escape(check.name)}[/] ({escape(str(check.file))}) on {check.task.name}, "
        f"success: {escape(goal)}{escape(prelude)}; seeds {seeds}",
        soft_wrap=True,
    )
    results = result.get("results") or []
    if not results:
        why = "the code was rejected" if not result.get("episodes") else "the check stopped"
        out.print(f"[red]no episode ran to its end:[/] {why} (see the errors below)")
    for record in results:
        out.print(_seed_line(record), soft_wrap=True)
        trace = record.get("trace") or []
        if trace:
            out.print(f"    last skill calls: {escape('; '.join(trace[-5:]))}", soft_wrap=True)
    errors = result.get("errors") or []
    if errors:
        out.print(f"[bold]errors ({len(errors)}):[/]")
    for error in errors:
        out.print(_error_line(error), soft_wrap=True)
    rate = float(result.get("success_rate", 0.0))
    colour = "green" if passed(check, result) else "red"
    extra = _extra(result, _SUMMARY_FIELDS)
    out.print(
        f"[bold {colour}]success rate {rate:.0%}[/] ({result.get('successes', 0)}/"
        f"{len(check.seeds)} seeds); mean {float(result.get('mean_steps', 0.0)):.1f} "
        f"env steps; run() returned True in {float(result.get('returned_true_rate', 0.0)):.0%}"
        + (f"; {extra}" if extra else ""),
        soft_wrap=True,
    )


def _seed_line(record: Mapping[str, Any]) -> str:
    status = "[green]ok[/]  " if record.get("success") else "[red]FAIL[/]"
    parts = [
        f"  seed {record.get('seed')}: {status}",
        f"{record.get('steps', 0)} steps",
        "returned True" if record.get("returned_true") else "did not return True",
    ]
    if record.get("prelude_steps"):
        parts.append(f"prelude {record['prelude_steps']} steps")
    if record.get("prelude_ok") is False:
        parts.append("[red]the prelude failed[/]")
    if record.get("interrupted"):
        parts.append(f"interrupted: {escape(str(record['interrupted']))}")
    if "reason" in record:
        parts.append(f"why: {escape(str(record['reason']))}")
    if not record.get("success") and record.get("inventory"):
        items = ", ".join(f"{k} {v}" for k, v in record["inventory"].items())
        parts.append(f"inventory: {escape(items)}")
    extra = _extra(record, _SEED_FIELDS)
    return "  ".join(parts + ([extra] if extra else []))


def _error_line(error: Mapping[str, Any]) -> str:
    where = [f"line {error['line']}" if error.get("line") is not None else "no line"]
    if error.get("step") is not None:
        where.append(f"step {error['step']}")
    if error.get("seed") is not None:
        where.append(f"seed {error['seed']}")
    extra = _extra(error, _ERROR_FIELDS)
    return (
        f"  [red]{escape(str(error.get('kind', 'error')))}[/] ({', '.join(where)}): "
        f"{escape(str(error.get('message', '')))}" + (f"  {extra}" if extra else "")
    )


def _extra(record: Mapping[str, Any], known: set[str]) -> str:
    """Fields check_code_action may add later, shown rather than dropped."""
    return escape(" ".join(f"{k}={v}" for k, v in record.items() if k not in known))


def _task(name: str) -> tuple[TaskSpec, EnvAdapter]:
    """The task `<env>:<task>` and its env's adapter; CodeCheckInputError when unknown."""
    env, sep, _ = name.partition(":")
    if not sep or not env:
        raise CodeCheckInputError(
            f"unknown task {name!r}: task ids look like <env>:<task>, e.g. crafter:collect_wood "
            "(`rlgpt tasks` lists them)"
        )
    try:
        adapter = load_adapter(env)
        task = adapter.task(name)
    except UnknownTaskError as exc:
        raise CodeCheckInputError(f"{exc} (`rlgpt tasks` lists every env's tasks)") from None
    except PluginNotFoundError as exc:
        raise CodeCheckInputError(
            f"unknown task {name!r}: {exc} (`rlgpt tasks` lists the tasks)"
        ) from None
    why = unavailable_reason(adapter)
    if why:
        raise CodeCheckInputError(f"env {env!r} cannot run here: {why}")
    return task, adapter


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _library(path: Path | None, prelude: list[str]) -> Path | None:
    """The library directory, checked: it exists and holds every prelude action."""
    if path is None:
        if prelude:
            raise CodeCheckInputError("--prelude needs --library (the library holding them)")
        return None
    # ActionLibrary creates a missing root: a typo would silently check against nothing.
    if not (path / MANIFEST).is_file():
        raise CodeCheckInputError(f"no action library at {str(path)!r} (no {MANIFEST} there)")
    try:
        library = ActionLibrary(path)
        missing = [name for name in prelude if name not in library]
        names = library.names()
    except LibraryError as exc:
        raise CodeCheckInputError(str(exc)) from None
    if missing:
        raise CodeCheckInputError(
            f"--prelude names actions not in {path}: {', '.join(missing)}; it holds: "
            f"{', '.join(names) or 'none'}"
        )
    return path


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr while the check runs, so that nothing the env,
    its worker processes or C libraries print can get into the one JSON object on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
