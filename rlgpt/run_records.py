"""Past runs read back from their folders and checkpoints: what `rlgpt runs` lists and compares.

A run is a folder `<runs dir>/<thread id>` (context.json from the start; report.md and
metrics.json at the end; model_error.json when the model endpoint failed) and the thread of
the same id in the checkpointer. Either may be missing: a folder moved without its
checkpoints still reads from metrics.json, a thread whose folder is gone still reads from
its checkpoint. Paths inside the files are never trusted to point anywhere: files of the
run are looked up inside the folder where it lies now.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from rlgpt.checkpoint import is_postgres_url, open_checkpointer
from rlgpt.logging import get_logger

if TYPE_CHECKING:
    from langgraph.types import StateSnapshot

log = get_logger("runs")

#: Files that make a directory under the runs directory a run folder.
RUN_FILES = ("context.json", "metrics.json", "model_error.json")
#: Roles that call a model, with the Context fields naming their plugin and model.
MODEL_ROLES = ("planner", "coder", "critic")

#: Status codes (the JSON `status`) and how a table shows them.
STATUS_LABELS = {
    "finished": "finished",
    "paused": "paused for review",
    "model_error": "stopped: model error",
    "disk_full": "stopped: disk full",
    "failed": "stopped: error",
    "interrupted": "running or interrupted",
    "no_checkpoint": "no checkpoint",
}

WALL_TIME_HELP = (
    "Wall time runs from the run's first checkpoint to its last one, including any wait "
    "between a pause or stop and its resume; for a run read without checkpoints, from "
    "context.json's to metrics.json's modification time (kept by mv and cp -a, not by "
    "cp -r). Model time is the sum of the seconds of every model call, all roles."
)

# `rlgpt run` ids start with their UTC start time (cli._new_run_id).
_ID_STAMP = re.compile(r"^(\d{8}-\d{6})-")


class RunNotFoundError(FileNotFoundError):
    """No run answers to the id, or the runs directory or checkpoint file is missing."""


@dataclass
class RunRecord:
    """One run as read back: its settings, its state and how it stands."""

    id: str
    folder: Path | None
    context: dict[str, Any]
    state: dict[str, Any]
    status: str
    detail: str = ""
    started: datetime | None = None
    ended: datetime | None = None
    source: str = "none"
    times: str = "none"
    thread_starts: list[datetime] = field(default_factory=list)

    @property
    def task(self) -> str | None:
        """The task id, when the state holds it."""
        task = self.state.get("task")
        return str(task) if task else None

    @property
    def env(self) -> str | None:
        """The env plugin, from the settings or the resolved task."""
        env = self.context.get("env") or (self.state.get("task_spec") or {}).get("env")
        return str(env) if env else None

    @property
    def last_evaluation(self) -> dict[str, Any] | None:
        """The critic's last evaluation, if any ran."""
        evaluations = self.state.get("evaluations") or []
        return dict(evaluations[-1]) if evaluations else None

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        """The critic's evaluations, oldest first."""
        return [dict(e) for e in self.state.get("evaluations") or []]

    @property
    def task_success(self) -> float | None:
        """Task success rate of the last evaluation."""
        last = self.last_evaluation
        return float(last["task_success_rate"]) if last else None

    @property
    def score(self) -> float | None:
        """The env's score in the last evaluation (as in the report: only with achievements)."""
        last = self.last_evaluation
        if not last or not last.get("achievements") or last.get("score") is None:
            return None
        return float(last["score"])

    @property
    def env_steps_by_part(self) -> dict[str, int]:
        """The state's env-step ledger (code checks, RL, evaluations, ...)."""
        return {k: int(v) for k, v in (self.state.get("env_steps") or {}).items()}

    @property
    def env_steps(self) -> int | None:
        """Every env step the run took; None when nothing of its state could be read."""
        return sum(self.env_steps_by_part.values()) if self.source != "none" else None

    @property
    def usage(self) -> dict[str, dict[str, Any]]:
        """Model usage per role (calls, cached calls, tokens, seconds)."""
        return {role: dict(u) for role, u in (self.state.get("usage") or {}).items()}

    @property
    def model_seconds(self) -> float | None:
        """Seconds spent in model calls, all roles."""
        if self.source == "none":
            return None
        return float(sum(float(u.get("seconds", 0.0)) for u in self.usage.values()))

    @property
    def wall_seconds(self) -> float | None:
        """From start to the last checkpoint (see WALL_TIME_HELP)."""
        if self.started is None or self.ended is None:
            return None
        return max(0.0, (self.ended - self.started).total_seconds())

    @property
    def models(self) -> dict[str, str]:
        """The model string of each model role, as the run's settings name it."""
        ctx = self.context
        return {r: str(ctx[f"{r}_model"]) for r in MODEL_ROLES if f"{r}_model" in ctx}

    @property
    def plugins(self) -> dict[str, str]:
        """The node plugin of each role (a role whose plugin is not `llm` may call no model)."""
        roles = (*MODEL_ROLES, "rl_trainer")
        return {r: str(self.context[r]) for r in roles if r in self.context}

    def summary(self) -> dict[str, Any]:
        """The run as one JSON object; the keys are the same for every run."""
        return {
            "id": self.id,
            "task": self.task,
            "env": self.env,
            "status": self.status,
            "status_text": STATUS_LABELS.get(self.status, self.status),
            "status_detail": self.detail,
            "task_success": self.task_success,
            "score": self.score,
            "env_steps": self.env_steps,
            "env_steps_by_part": self.env_steps_by_part,
            "model_seconds": self.model_seconds,
            "wall_seconds": self.wall_seconds,
            "started": self.started.isoformat() if self.started else None,
            "ended": self.ended.isoformat() if self.ended else None,
            "times_from": self.times,
            "evaluations": len(self.evaluations),
            "models": self.models,
            "plugins": self.plugins,
            "folder": str(self.folder) if self.folder else None,
            "source": self.source,
        }

    def file(self, recorded: str) -> Path | None:
        """Where a file the state names (`recorded`, absolute or relative, written wherever
        the run was then) lies now: inside the run folder if it is there, else as recorded."""
        path = PurePath(recorded)
        candidates: list[Path] = []
        if self.folder is not None:
            parts = path.parts
            if not path.is_absolute():
                candidates.append(self.folder / path)
            # The part after the run's own folder, wherever that folder was then.
            if self.id in parts:
                index = len(parts) - 1 - parts[::-1].index(self.id)
                candidates.append(self.folder.joinpath(*parts[index + 1 :]))
            if "library" in parts:
                index = len(parts) - 1 - parts[::-1].index("library")
                candidates.append(self.folder.joinpath(*parts[index:]))
        candidates.append(Path(path))
        return next((c for c in candidates if c.is_file()), None)

    def code_actions(self) -> dict[str, dict[str, Any]]:
        """The code actions of the run's library: name -> version, sub-action and source
        (None when the file cannot be found)."""
        out: dict[str, dict[str, Any]] = {}
        for name, record in sorted((self.state.get("library") or {}).items()):
            if record.get("kind") != "code":
                continue
            found = self.file(str(record.get("path", "")))
            try:
                source = found.read_text() if found else None
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("code_action_unreadable", run=self.id, path=str(found), error=str(exc))
                source = None
            out[name] = {
                "version": record.get("version"),
                "subaction": record.get("subaction", ""),
                "path": str(found) if found else None,
                "source": source,
            }
        return out


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None when missing, and a warning when unreadable."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("run_file_unreadable", path=str(path), error=str(exc))
        return None
    return data if isinstance(data, dict) else None


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def _id_time(run_id: str) -> datetime | None:
    match = _ID_STAMP.match(run_id)
    if not match:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _timestamp(text: Any) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


#: How the error a checkpoint keeps for an interrupted node starts.
_INTERRUPTIONS = ("KeyboardInterrupt", "CancelledError")


def _disk_full(text: str) -> bool:
    return any(s in text for s in ("No space left on device", "disk is full", "ENOSPC"))


class RunStore:
    """The runs of one runs directory and checkpointer; a context manager (it holds the
    checkpointer open).

    Args:
        runs_dir: The runs directory (`Context.runs_dir`).
        checkpointer: A SQLite file or `postgresql://` URL; default
            `<runs_dir>/checkpoints.sqlite`, read only when it exists (nothing is created).
    """

    def __init__(self, runs_dir: Path, checkpointer: str | None = None) -> None:
        self.runs_dir = runs_dir
        self.explicit = checkpointer is not None
        self.target = checkpointer or str(runs_dir / "checkpoints.sqlite")
        self._stack = contextlib.ExitStack()
        self._graph: Any = None
        self._starts: dict[str, list[datetime]] = {}

    def __enter__(self) -> RunStore:
        if not self.explicit and not self.runs_dir.is_dir():
            raise RunNotFoundError(
                f"no runs directory {str(self.runs_dir)!r} (pass --runs-dir, or --checkpointer "
                "for runs kept in PostgreSQL)"
            )
        if is_postgres_url(self.target) or Path(self.target).expanduser().is_file():
            try:
                self._open()
            except BaseException:
                self._stack.close()  # __exit__ does not run when __enter__ raises
                raise
        elif self.explicit:
            raise RunNotFoundError(f"no checkpoint file {self.target!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self) -> None:
        from rlgpt.graph.builder import builder

        saver = self._stack.enter_context(open_checkpointer(self.target))
        self._graph = builder.compile(checkpointer=saver)
        # Every thread starts with an input checkpoint (step -1): a cheap way to list the
        # threads of any saver. Listed first, read after: SqliteSaver holds its lock while
        # a list() is being iterated, so a get_state inside the loop would wait forever.
        for item in list(saver.list(None, filter={"step": -1})):
            thread = str(item.config["configurable"]["thread_id"])
            stamp = _timestamp(item.checkpoint.get("ts"))
            if stamp is not None:
                self._starts.setdefault(thread, []).append(stamp)
            else:
                self._starts.setdefault(thread, [])

    def folder_ids(self) -> list[str]:
        """Names of the run folders under the runs directory."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.runs_dir.iterdir()
            if p.is_dir() and (p.name in self._starts or any((p / f).exists() for f in RUN_FILES))
        )

    def ids(self) -> list[str]:
        """Every run id: folders and checkpoint threads."""
        return sorted({*self.folder_ids(), *self._starts})

    def records(self) -> list[RunRecord]:
        """Every run, newest first."""
        runs = [self.load(run_id) for run_id in self.ids()]
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(runs, key=lambda r: (r.started or oldest, r.id), reverse=True)

    def find(self, ref: str) -> RunRecord:
        """The run `ref` names: an id, a unique start of one, or the path of a run folder."""
        ids = self.ids()
        if ref in ids:
            return self.load(ref)
        starting = [i for i in ids if i.startswith(ref)] if ref else []
        if len(starting) == 1:
            return self.load(starting[0])
        if len(starting) > 1:
            raise RunNotFoundError(
                f"run id {ref!r} is ambiguous under {self.runs_dir}: {', '.join(starting[:5])}"
            )
        path = Path(ref)
        if path.is_dir() and any((path / f).exists() for f in RUN_FILES):
            return self.load(path.name, folder=path)
        hint = f" ({len(ids)} runs there, e.g. {ids[-1]}; `rlgpt runs` lists them)" if ids else ""
        raise RunNotFoundError(f"no run {ref!r} under {self.runs_dir}{hint}")

    def _snapshot(self, run_id: str) -> StateSnapshot | None:
        if self._graph is None:
            return None
        snapshot: StateSnapshot = self._graph.get_state({"configurable": {"thread_id": run_id}})
        if not snapshot.values and not snapshot.next and snapshot.created_at is None:
            return None
        return snapshot

    def load(self, run_id: str, folder: Path | None = None) -> RunRecord:
        """The run of that id (its folder defaults to `<runs dir>/<id>`, if it exists)."""
        if folder is None:
            candidate = self.runs_dir / run_id
            folder = candidate if candidate.is_dir() else None
        context = _read_json(folder / "context.json") if folder else None
        metrics = _read_json(folder / "metrics.json") if folder else None
        if context is None and metrics is not None:
            context = metrics.get("context")
        snapshot = self._snapshot(run_id)
        record = RunRecord(
            id=run_id,
            folder=folder,
            context=dict(context or {}),
            state={},
            status="no_checkpoint",
            thread_starts=sorted(self._starts.get(run_id, [])),
        )
        if snapshot is not None:
            record.state = dict(snapshot.values)
            record.source = "checkpoint"
        elif metrics is not None and isinstance(metrics.get("state"), dict):
            record.state = dict(metrics["state"])
            record.source = "metrics.json"
        _set_times(record, snapshot, has_metrics=metrics is not None)
        record.status, record.detail = _status(record, snapshot, metrics is not None)
        return record


def _set_times(record: RunRecord, snapshot: StateSnapshot | None, has_metrics: bool) -> None:
    """The run's start and end (see WALL_TIME_HELP), and where they came from."""
    if snapshot is not None and snapshot.created_at:
        record.ended = _timestamp(snapshot.created_at)
        # A thread without an input checkpoint of its own (none listed): its id's time.
        starts = record.thread_starts or [t for t in [_id_time(record.id)] if t]
        record.started = starts[0] if starts else None
        record.times = "checkpoints"
        return
    folder = record.folder
    if folder is None:
        return
    # context.json is written when the run starts (again on a resume), metrics.json at its end.
    record.started = _mtime(folder / "context.json") or _id_time(record.id)
    record.ended = _mtime(folder / "metrics.json") if has_metrics else None
    record.times = "file times"


def _status(
    record: RunRecord, snapshot: StateSnapshot | None, has_metrics: bool
) -> tuple[str, str]:
    """(status code, detail) of a run; see STATUS_LABELS."""
    if snapshot is None:
        if has_metrics:
            return "finished", "read from metrics.json (no checkpoint)"
        if record.folder and (record.folder / "model_error.json").exists():
            return "no_checkpoint", "its model_error.json says the model endpoint failed"
        return "no_checkpoint", ""
    interrupts = list(snapshot.interrupts) or [i for t in snapshot.tasks for i in t.interrupts]
    if interrupts:
        value = interrupts[0].value
        kind = value.get("kind", "") if isinstance(value, dict) else ""
        return "paused", kind or "review"
    if not snapshot.next:
        return "finished", ""
    waiting = ", ".join(snapshot.next)
    errors = [(t.name, str(t.error)) for t in snapshot.tasks if t.error is not None]
    model_error = _read_json(record.folder / "model_error.json") if record.folder else None
    if model_error is not None and record.folder is not None:
        written = _mtime(record.folder / "model_error.json")
        # A model error resumed past leaves its file behind: only one written after the
        # last checkpoint stopped the run.
        if written and (record.ended is None or written >= record.ended):
            return "model_error", f"{model_error.get('kind', '')}: {model_error.get('message', '')}"
    # Ctrl-C (or a cancelled task) is kept as the node's error: the run was interrupted.
    stopped = [(n, e) for n, e in errors if e.startswith(_INTERRUPTIONS)]
    if stopped:
        return "interrupted", f"interrupted in {stopped[0][0]}; next: {waiting}"
    for node, error in errors:
        if _disk_full(error):
            return "disk_full", f"{node}: {error}"
    for node, error in errors:
        if "LLMError" in error:
            return "model_error", f"{node}: {error}"
    if errors:
        node, error = errors[0]
        return "failed", f"{node}: {error}"
    return "interrupted", f"next: {waiting}"
