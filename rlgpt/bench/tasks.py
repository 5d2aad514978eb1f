"""Tasks suite: the full planner/coder/RL/critic loop on a ladder of Crafter tasks and seeds."""

from __future__ import annotations

import json
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlgpt.bench.config_fields import described
from rlgpt.bench.tasks_records import comparison_of, crashed_record, record_from_state, task_name
from rlgpt.bench.tasks_report import write_tasks
from rlgpt.execution import Executor, Job, JobOutcome, LocalExecutor
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
    model: str = described(DEFAULT_MODEL, "Model of the planner, coder and critic (Context form).")
    context: dict[str, Any] = field(
        default_factory=dict,
        metadata={"description": "Extra Context fields (budgets, plugins, per-role models)."},
    )
    runs_dir: str = described(
        "runs/bench_tasks", "Where each (task, seed) gets its own runs directory."
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
        "runs_dir": str(runs_root / f"{task_name(task)}-seed{seed}"),
    }
    ctx = Context.from_mapping(values)
    if ctx.approve_plan or ctx.approve_rl:
        raise ValueError("the tasks suite runs unattended: approve_plan and approve_rl must be off")
    return ctx


# ------------------------------------------------------------------ one run
#: Runs the graph on a task with a Context, passing each streamed chunk on; returns the
#: final state.
Invoke = Callable[[str, Any, Callable[[str, Any], None] | None], dict[str, Any]]


def invoke_graph(
    task: str, ctx: Any, on_chunk: Callable[[str, Any], None] | None = None
) -> dict[str, Any]:
    """Run the graph on `task` as `rlgpt run` does (a SQLite checkpointer in the runs
    directory, the run's context saved beside it); returns the final state."""
    from langchain_core.runnables import RunnableConfig

    from rlgpt.checkpoint import open_checkpointer
    from rlgpt.files import atomic_write_text
    from rlgpt.graph.builder import builder
    from rlgpt.graph.state import InputState

    thread_id = f"{task_name(task)[:24]}-seed{ctx.seed}-{uuid.uuid4().hex[:6]}"
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


def run_record(
    task: str, seed: int, ctx: Any, invoke: Invoke, on_chunk: Callable[[str, Any], None] | None
) -> dict[str, Any]:
    """Run the graph once and return the run's record (a crashed run's, if it raised)."""
    started = time.monotonic()
    try:
        state = invoke(task, ctx, on_chunk)
        return record_from_state(
            task, seed, state, time.monotonic() - started, ctx.success_threshold
        )
    except Exception as exc:  # one broken run must not end a long bench
        log.error("tasks_run_crashed", task=task, seed=seed, error=repr(exc))
        return crashed_record(task, seed, exc, time.monotonic() - started, ctx.runs_dir)


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


def suite_result(
    config: TasksConfig, first: Any, path: Path, resume: bool, compare: Path | None
) -> dict[str, Any]:
    """The result an invocation starts from: its head, the runs kept on resume, the "before"."""
    from rlgpt.bench import writers

    effective = {k: v for k, v in first.as_dict().items() if k not in ("seed", "runs_dir")}
    suite_config = {
        "tasks": list(config.tasks),
        "seeds": list(config.seeds),
        "model": config.model_string(),
        "context": dict(config.context),
        "runs_dir": str(Path(config.runs_dir)),
        "effective_context": effective,
    }
    head = writers.envelope("tasks", suite_config)
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
    return result


def run_tasks(
    config: TasksConfig,
    out: Path,
    tag: str,
    *,
    resume: bool = False,
    compare: Path | None = None,
    invoke: Invoke = invoke_graph,
    executor: Executor | None = None,
) -> dict[str, Path]:
    """Run every (task, seed) pair not yet done, writing the result files after each run;
    returns the paths of the files.

    Args:
        config: Tasks, seeds, model and extra context.
        out: Results directory.
        tag: Suffix of the file names.
        resume: Keep the finished runs of an existing `tasks_<tag>.json` and skip them.
        compare: An earlier tasks result to show as "before".
        invoke: Runs one graph run and returns its final state (replaced in tests).
        executor: Where the runs go (default: one after another here, seed by seed).
    """
    from rlgpt.bench.progress import suite_progress
    from rlgpt.envs.base import load_adapter

    executor = executor or LocalExecutor()
    runs_root = Path(config.runs_dir)
    contexts = {
        (task, seed): run_context(config, task, seed, runs_root)
        for seed in config.seeds
        for task in config.tasks
    }
    for (task, _), ctx in contexts.items():
        load_adapter(ctx.env).task(task)  # an unknown task fails before any run
    first = next(iter(contexts.values()))
    result = suite_result(config, first, out / f"tasks_{tag}.json", resume, compare)
    result["config"]["executor"] = executor.name
    runs: list[dict[str, Any]] = result["runs"]
    invocation = len(result["invocations"]) - 1
    rank = {task: i for i, task in enumerate(config.tasks)}
    done = {(r["task"], r["seed"]) for r in runs}
    pending = [pair for pair in contexts if pair not in done]
    log.info(
        "tasks_suite", pending=len(pending), done=len(done), runs_dir=str(runs_root),
        executor=executor.name,
    )  # fmt: skip
    paths = write_tasks(result, out, tag)
    # `local` runs them in order (seed by seed, task by task), so later runs can reuse the
    # code actions earlier runs shared; on Ray they run at once and reuse what is there.
    jobs = [
        Job(f"{task_name(task)} seed {seed}", tasks_run, (task, seed, contexts[task, seed], invoke))
        for task, seed in pending
    ]
    with suite_progress() as progress:
        bar = progress.add_task("runs", total=len(pending))

        def on_progress(event: dict[str, Any]) -> None:
            label = event.get("job", "")
            if event.get("event") == "nodes_done":
                text = f"{label}: {', '.join(event['nodes'])} done"
            elif event.get("event") == "rl_progress":
                text = f"{label}: RL {event.get('env_steps', 0):,}/{event.get('budget', 0):,} steps"
            else:
                text = f"{label}: starting"
            progress.update(bar, description=text)

        def on_result(index: int, outcome: JobOutcome) -> None:
            nonlocal paths
            task, seed = pending[index]
            if outcome.error is None:
                record = dict(outcome.value)
            else:  # lost past its retries (a run's own errors are in its record)
                ctx = contexts[task, seed]
                record = crashed_record(task, seed, outcome.error, outcome.seconds, ctx.runs_dir)
            record["invocation"] = invocation
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

        executor.run(jobs, on_progress=on_progress, on_result=on_result)
    return paths


def tasks_run(
    task: str,
    seed: int,
    ctx: Any,
    invoke: Invoke,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """One (task, seed) run as an executor job; its graph's progress goes to `on_progress`."""

    def on_chunk(mode: str, chunk: Any) -> None:
        if on_progress is None or not isinstance(chunk, dict):
            return
        if mode == "updates":
            on_progress({"event": "nodes_done", "nodes": list(chunk)})
        elif mode == "custom" and chunk.get("event") == "rl_progress":
            on_progress(chunk)

    return run_record(task, seed, ctx, invoke, on_chunk)
