"""`rlgpt run|runs|library|bench|code|plugins|models|tasks|report|serve`: the command line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import typing
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rlgpt import plugins
from rlgpt.checkpoint import CheckpointerUnavailable, open_checkpointer
from rlgpt.envs.base import UnknownTaskError
from rlgpt.exit_codes import ExitCode
from rlgpt.graph.context import ConfigError, Context
from rlgpt.llm import LLMError
from rlgpt.logging import configure_logging, get_logger, terminal_console
from rlgpt.plugins import PluginNotFoundError
from rlgpt.serve import port_free, serve_command, serve_env

console = terminal_console()
log = get_logger("cli")


def _add_context_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Context field (`--rl-timesteps 5000`), its help text the field description."""
    group = parser.add_argument_group("run settings (also settable in a TOML file)")
    for name, info in Context.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{info.description} (default: {info.default!r})"
        hint = info.annotation
        optional = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(optional) == 1 and len(typing.get_args(hint)) == 2:
            hint = optional[0]  # `int | None`: the flag gives the int
        if hint is bool:
            group.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif typing.get_origin(hint) is typing.Literal:
            group.add_argument(flag, dest=name, choices=typing.get_args(hint), help=help_text)
        else:
            kind: Any = hint if hint in (int, float, str) else str
            group.add_argument(flag, dest=name, type=kind, help=help_text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlgpt", description=__doc__)
    parser.add_argument(
        "--json-logs", action="store_true", help="Log JSON lines even on a terminal."
    )
    parser.add_argument(
        "--log-level",
        help="Log level (default: INFO off a terminal; WARNING on one, where a live panel "
        "shows progress).",
    )
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-q", "--quiet", action="store_true", help="Errors and the final line only; no panel."
    )
    loudness.add_argument(
        "-v", "--verbose", action="store_true", help="Log every event (INFO) on a terminal too."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="Run the planner/coder/RL/critic loop on a task.")
    run.add_argument("--task", help="Task name, e.g. crafter:make_wood_pickaxe.")
    run.add_argument("--config", type=Path, help="TOML file with run settings (and `task`).")
    run.add_argument("--resume", metavar="THREAD_ID", help="Resume a run from its last checkpoint.")
    run.add_argument(
        "--checkpointer",
        metavar="PATH_OR_URL",
        help="SQLite file or postgresql:// URL for checkpoints "
        "(default: <runs-dir>/checkpoints.sqlite; Postgres needs the `postgres` extra).",
    )
    run.add_argument(
        "--answer",
        metavar="JSON",
        help='Answer to a paused review, e.g. \'{"action": "approve"}\' (with --resume).',
    )
    _add_context_flags(run)

    sub.add_parser("plugins", help="List installed node, env and model plugins.")
    models = sub.add_parser("models", help="List the embedded models and where their files are.")
    models.add_argument(
        "action",
        nargs="?",
        choices=("list", "prepare"),
        default="list",
        help="`prepare` joins and hash-checks every installed model now (default: list).",
    )
    sub.add_parser("tasks", help="List the tasks of every installed environment.")

    report = sub.add_parser("report", help="Rewrite a run's report from its metrics.json.")
    report.add_argument("run_dir", type=Path)

    serve = sub.add_parser("serve", help="Serve the graph with `langgraph dev` on 127.0.0.1.")
    serve.add_argument("--port", type=int, default=2024)
    serve.add_argument("--config", type=Path, default=Path("langgraph.json"))
    serve.add_argument(
        "--jobs", type=int, default=4, help="Runs the server executes at once (default 4)."
    )
    serve.add_argument(
        "--reload",
        action="store_true",
        help="Restart on file changes (files a run writes under the working directory "
        "restart it too).",
    )

    from rlgpt.bench.cli import add_bench_arguments

    bench = sub.add_parser(
        "bench", help="Run benchmark suites (throughput, learning); results in bench/results/."
    )
    add_bench_arguments(bench)

    from rlgpt.code_command import add_code_arguments

    code = sub.add_parser("code", help="Check a code action file as the coder does.")
    add_code_arguments(code)

    from rlgpt.runs_command import add_runs_arguments

    runs = sub.add_parser("runs", help="List past runs, or compare two (`runs compare A B`).")
    add_runs_arguments(runs)

    from rlgpt.library_command import add_library_arguments

    library = sub.add_parser(
        "library", help="List, show or remove the code actions shared across runs."
    )
    add_library_arguments(library)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rlgpt` command."""
    args = _parser().parse_args(argv)
    configure_logging(_log_level(args), json=True if args.json_logs else None)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "plugins":
            return cmd_plugins()
        if args.command == "models":
            return cmd_models(prepare=args.action == "prepare")
        if args.command == "tasks":
            return cmd_tasks()
        if args.command == "report":
            from rlgpt.report import regenerate

            console.print(f"report: {regenerate(args.run_dir)}")
            return 0
        if args.command == "bench":
            from rlgpt.bench.cli import run_bench

            return run_bench(args)
        if args.command == "code":
            from rlgpt.code_command import run_code_command

            return run_code_command(args)
        if args.command == "library":
            from rlgpt.library_command import run_library_command

            return run_library_command(args)
        if args.command == "runs":
            from rlgpt.runs_command import run_runs_command

            return run_runs_command(args)
        if args.command == "serve":
            return cmd_serve(args.port, args.config, jobs=args.jobs, reload=args.reload)
    except (
        ConfigError,
        UnknownTaskError,
        PluginNotFoundError,
        FileNotFoundError,
        CheckpointerUnavailable,
    ) as exc:
        # Messages quote user input (paths, task names) that may hold rich markup.
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return ExitCode.BAD_CONFIG
    return ExitCode.ERROR


def _log_level(args: argparse.Namespace) -> str:
    """--log-level if given; else ERROR with --quiet, INFO with --verbose or off a terminal
    (JSON lines for machines), WARNING on a terminal (the live panel shows progress)."""
    if args.log_level:
        return str(args.log_level)
    if args.quiet:
        return "ERROR"
    if args.verbose or args.json_logs or not sys.stderr.isatty():
        return "INFO"
    return "WARNING"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, name)
        for name in Context.field_names()
        if getattr(args, name, None) is not None
    }


def _new_run_id(task: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{task.split(':')[-1][:24]}-{uuid.uuid4().hex[:4]}"


def resolve_run(args: argparse.Namespace) -> tuple[str, str | None, Context]:
    """(thread id, task or None when resuming, context) from flags, a TOML file or a saved run."""
    overrides = _overrides(args)
    if args.resume:
        runs_dir = Path(overrides.get("runs_dir", Context().runs_dir))
        saved = runs_dir / args.resume / "context.json"
        if not saved.exists():
            raise FileNotFoundError(f"no run {args.resume!r} under {runs_dir} (missing {saved})")
        ctx = Context.from_mapping({**json.loads(saved.read_text()), **overrides})
        return args.resume, None, ctx
    task = args.task
    if args.config:
        ctx = Context.from_toml(args.config, overrides)
        if task is None:
            import tomllib

            data = tomllib.loads(args.config.read_text())
            task = data.get("run", data).get("task")
    else:
        ctx = Context.from_mapping(overrides)
    if not task:
        raise ConfigError(
            "no task: pass --task (e.g. crafter:collect_wood) or set `task` in --config"
        )
    from rlgpt.envs.base import load_adapter

    load_adapter(ctx.env).task(task)
    return _new_run_id(task), task, ctx


def cmd_run(args: argparse.Namespace) -> int:
    """Run (or resume) the graph with a SQLite (default) or Postgres checkpointer, streaming."""
    from rlgpt.files import disk_full
    from rlgpt.graph import preflight

    thread_id, task, ctx = resolve_run(args)
    # Before the run folder exists: a run that cannot work leaves nothing behind.
    preflight.check(ctx)
    try:
        return _run_graph(args, thread_id, task, ctx)
    except Exception as exc:
        if not disk_full(exc):
            raise
        # Every file is written atomically, so what is on disk is whole; the checkpoint holds
        # the last finished node.
        console.print(
            f"[bold red]no space left[/] under {escape(ctx.runs_dir)} ({escape(str(exc))}); "
            "the files written so far are whole and the run keeps its last checkpoint; "
            f"free space, then resume with: rlgpt run --resume {thread_id}",
            soft_wrap=True,
        )
        return ExitCode.DISK_FULL


def _run_graph(args: argparse.Namespace, thread_id: str, task: str | None, ctx: Context) -> int:
    """`cmd_run`'s work: stream the graph to its end, a review pause or a model failure."""
    from langchain_core.runnables import RunnableConfig
    from langgraph.types import Command

    from rlgpt.files import atomic_write_text
    from rlgpt.graph.builder import builder
    from rlgpt.graph.state import InputState
    from rlgpt.run_display import STREAM_MODES, RunDisplay

    runs_dir = Path(ctx.runs_dir)
    run_dir = runs_dir / thread_id
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "context.json", json.dumps(ctx.as_dict(), indent=2))
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}, "recursion_limit": 200}
    target = args.checkpointer or str(runs_dir / "checkpoints.sqlite")
    with open_checkpointer(target) as saver:
        graph = builder.compile(checkpointer=saver)
        done = graph.get_state(config)
        if task is None and not done.next:
            console.print(f"run {thread_id} has already finished; nothing to resume")
            return _finished(dict(done.values), ctx)
        console.print(f"run [bold]{thread_id}[/] ({'resumed' if task is None else task})")
        inputs: InputState | Command[Any] | None = None if task is None else InputState(task=task)
        answers = [json.loads(args.answer)] if args.answer else []
        live = console.is_terminal and not args.quiet
        try:
            while True:
                with RunDisplay(console, live=live) as display:
                    for mode, chunk in graph.stream(
                        inputs, config, context=ctx, stream_mode=STREAM_MODES
                    ):
                        display.handle(mode, chunk)
                pending = graph.get_state(config).interrupts
                if not pending:
                    break
                answer = answers.pop(0) if answers else ask_reviewer(pending[0].value)
                if answer is None:
                    console.print(
                        f"run {thread_id} is paused for review: "
                        f"{escape(json.dumps(pending[0].value))}\n"
                        f"resume with: rlgpt run --resume {thread_id} --answer '<json>'",
                        soft_wrap=True,
                    )
                    return ExitCode.REVIEW
                inputs = Command(resume=answer)
        except KeyboardInterrupt:
            console.print(f"interrupted; resume with: rlgpt run --resume {thread_id}")
            return ExitCode.INTERRUPTED
        except LLMError as exc:
            if not exc.retryable:
                raise
            # The endpoint failed past its retries: the checkpoint keeps everything before
            # the node that called it, and a resume starts that node again.
            atomic_write_text(run_dir / "model_error.json", json.dumps(exc.as_record("model")))
            console.print(
                f"[bold red]the model endpoint failed[/] ({exc.kind}: "
                f"{escape(exc.message[:300])}); the run keeps its state; once the endpoint "
                f"answers, resume with: rlgpt run --resume {thread_id}",
                soft_wrap=True,
            )
            return ExitCode.MODEL_UNAVAILABLE
        values = graph.get_state(config).values
    return _finished(values, ctx)


def _finished(values: dict[str, Any], ctx: Context) -> ExitCode:
    """Say how a finished run ended; its exit code (0, 1 or 6) follows from its state alone,
    so a resume of a run that had already finished ends as the run did."""
    evaluations = values.get("evaluations", [])
    report = values.get("report_path")
    if not evaluations:
        # Nothing was evaluated (e.g. the evaluation failed): say why, as a failed run.
        errors = values.get("errors", [])
        why = errors[0]["message"] if errors else "no evaluation ran"
        console.print(
            f"[bold red]no evaluation:[/] {escape(why)}; report: {report}", soft_wrap=True
        )
        return ExitCode.ERROR
    rate = evaluations[-1]["task_success_rate"]
    if rate < ctx.success_threshold:
        console.print(
            f"task success {rate:.0%}, below the critic's bar of {ctx.success_threshold:.0%} "
            f"(exit code {int(ExitCode.BELOW_BAR)}); report: {report}",
            soft_wrap=True,
        )
        return ExitCode.BELOW_BAR
    console.print(f"task success {rate:.0%}; report: {report}", soft_wrap=True)
    return ExitCode.FINISHED


def ask_reviewer(payload: dict[str, Any]) -> Any:
    """Ask on the terminal; None when there is no terminal to ask on."""
    if not sys.stdin.isatty():
        return None
    console.print_json(data=payload)
    if payload.get("kind") == "approve_rl":
        budget = console.input(
            "approve these RL jobs? [Enter = yes, a number = new budget, n = skip] "
        )
        if budget.strip().lower() == "n":
            return {"action": "skip"}
        return (
            {"action": "approve", "timesteps": int(budget)}
            if budget.strip()
            else {"action": "approve"}
        )
    choice = console.input("plan: [Enter = approve, r = reject with feedback, or JSON answer] ")
    if not choice.strip():
        return {"action": "approve"}
    if choice.strip().lower() == "r":
        return {"action": "reject", "feedback": console.input("feedback: ")}
    return json.loads(choice)


def cmd_plugins() -> int:
    """Print every installed plugin by group."""
    table = Table("group", "name", "source")
    for registry in (plugins.nodes, plugins.envs, plugins.llms):
        for name, source in registry.describe().items():
            table.add_row(registry.group, name, source)
    Console().print(table)
    return 0


def cmd_models(prepare: bool) -> int:
    """List the embedded models (name, upstream, licence, file); `prepare` assembles them."""
    from rlgpt.llm.errors import LLMError
    from rlgpt.llm.model_files import DEFAULT_MODEL, MODELS, joined_file, model_path

    table = Table("model", "upstream", "licence", "file")
    failed = False
    for name, spec in MODELS.items():
        label = f"local:{name}" + (" (default)" if name == DEFAULT_MODEL else "")
        try:
            if prepare or len(spec.parts) == 1:
                where = str(model_path(name))
            else:
                joined = joined_file(name)
                where = str(joined) if joined else "not joined yet (`rlgpt models prepare`)"
        except LLMError as exc:
            where, failed = f"unavailable: {exc.message}", failed or prepare
        table.add_row(label, spec.upstream, spec.licence, where)
    Console().print(table)
    return 1 if failed else 0


def cmd_tasks() -> int:
    """Print the tasks of every installed environment that can be loaded here."""
    from rlgpt.envs.base import load_adapter

    out = Console()
    for name in plugins.envs.names():
        try:
            tasks = load_adapter(name).tasks()
        except Exception as exc:  # an optional env without its simulator still lists itself
            out.print(f"{name}: unavailable ({exc})", soft_wrap=True)
            continue
        out.print(f"{name}: {' '.join(tasks)}", soft_wrap=True)
    return 0


def cmd_serve(port: int, config: Path, jobs: int = 4, reload: bool = False) -> int:
    """Run `langgraph dev` in the foreground until Ctrl-C."""
    if not config.exists():
        raise FileNotFoundError(f"{config} not found (run from the project root or pass --config)")
    if not port_free(port):
        # `langgraph dev` would silently move to a random port and the URL below would be wrong.
        raise ConfigError(f"port {port} on 127.0.0.1 is in use; pass --port")
    console.print(
        f"serving on http://127.0.0.1:{port}; Studio: "
        f"https://smith.langchain.com/studio/?baseUrl=http://127.0.0.1:{port}"
    )
    try:
        return subprocess.call(serve_command(port, config, jobs, reload), env=serve_env())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
