"""Fault injection: a model endpoint that fails in each way users meet, in front of the real
local model server; each fault is a named error, and a run stopped by one resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from rlgpt.actions.library import ActionLibrary
from rlgpt.files import disk_full
from rlgpt.graph.schemas import Plan
from rlgpt.llm import LLMError, ask_structured
from rlgpt.llm.local_server import (
    URL_ENV,
    shared_base_url,
    shared_server,
    stop_shared_servers,
)
from rlgpt.llm.settings import LLMSettings
from rlgpt.tools.rl_job import RLJob
from rlgpt.tools.rl_pipeline import train_policy
from tests.faults import FaultyEndpoint
from tests.helpers import GOOD_CODE, finished_exit_code, save_numbers

pytestmark = [pytest.mark.integration, pytest.mark.faults]

#: Every fault tried and what it came to, saved for the faults table (runs/test_results).
OUTCOMES: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def _save_outcomes() -> Iterator[None]:
    yield
    if OUTCOMES:
        save_numbers("faults_model_endpoint", {"outcomes": OUTCOMES})


@pytest.mark.parametrize(
    ("mode", "kind", "retryable"),
    [
        ("refuse", "unreachable", True),
        ("drop", "unreachable", True),
        ("hang", "timeout", True),
        ("status:429", "rate_limit", True),
        ("status:500", "server", True),
        ("status:503", "server", True),
        ("truncate", "unreachable", True),
        ("invalid", "invalid", False),
    ],
)
def test_endpoint_fault_is_a_named_error(
    local_server: Any, mode: str, kind: str, retryable: bool
) -> None:
    """The model endpoint fails (refused, dropped, hung, HTTP error, truncated body, invalid
    answer): a named LLMError after one retry, retryable unless the answer is invalid."""
    proxy = FaultyEndpoint(os.environ[URL_ENV], mode)
    if mode == "refuse":
        proxy.stop()
    # Modes that pass the request on wait for the real model; the others fail at once.
    timeout = 300.0 if mode in ("truncate", "invalid") else 3.0
    settings = LLMSettings(model=f"{proxy.url}#smollm2", timeout=timeout, max_retries=1)
    started = time.monotonic()
    with pytest.raises(LLMError) as info:
        ask_structured("planner", settings, Plan, [HumanMessage("Plan how to collect wood.")])
    seconds = time.monotonic() - started
    proxy.stop()
    error = info.value
    OUTCOMES.append(
        {"fault": mode, "error": error.kind, "retryable": error.retryable,
         "seconds": round(seconds, 1), "message": error.message[:200]}
    )  # fmt: skip
    assert (error.kind, error.retryable) == (kind, retryable), error.message
    # One retry after the first attempt: a fault costs at most two timeouts plus backoff.
    assert seconds < 2 * min(settings.timeout, 60) + 10
    if mode not in ("refuse",):
        assert proxy.requests == (2 if retryable else 1 + settings.max_retries)


def test_run_stopped_by_a_dead_endpoint_resumes_where_it_stopped(
    local_server: Any, tmp_path: Path
) -> None:
    """The endpoint dies after the planner's call: the run stops at the coder with its state
    kept (exit 4) and, once the endpoint is back, `--resume` goes on from the coder."""
    # Each `rlgpt run` first checks the endpoint once (a models-list GET): the first run makes
    # that check and the planner's call, the second its check, then the coder's call fails.
    proxy = FaultyEndpoint(os.environ[URL_ENV], mode="drop", fail_after=3)
    model = f"{proxy.url}#smollm2"
    settings = {
        "planner-model": model, "coder-model": model, "critic": "rules",
        "plan-revisions": 0, "code-repairs": 0, "max-inner-loops": 0, "max-outer-loops": 0,
        "eval-episodes": 2, "code-check-episodes": 1, "llm-timeout": 600, "llm-max-retries": 1,
        "llm-max-tokens": 400, "subaction-max-steps": 100, "code-action-max-steps": 100,
    }  # fmt: skip
    flags = [f"--{k}={v}" for k, v in settings.items()]
    cmd = [sys.executable, "-m", "rlgpt.cli", "--json-logs", "run", "--runs-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != URL_ENV}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=900)

    # 1. Plan (the endpoint still answers), then pause for review.
    first = cli("--task", "crafter:collect_wood", "--approve-plan", "--no-gif",
                "--no-reuse-library", *flags)  # fmt: skip
    assert first.returncode == 3, first.stdout + first.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    # 2. One code step; the endpoint is dead when the coder asks.
    plan = {
        "sub_actions": [
            {
                "id": "wood",
                "description": "collect wood",
                "method": "code",
                "predicate": {"kind": "achievement", "name": "collect_wood"},
            }
        ]
    }
    stopped = cli(
        "--resume", run_dir.name, "--answer", json.dumps({"action": "edit", "plan": plan})
    )
    assert stopped.returncode == 4, stopped.stdout + stopped.stderr
    assert "resume with: rlgpt run --resume" in stopped.stdout + stopped.stderr
    recorded = json.loads((run_dir / "model_error.json").read_text())
    assert recorded["kind"] == "llm_unreachable"
    requests_before = proxy.requests
    # 3. The endpoint is back: the run goes on from the coder, with the reviewed plan.
    proxy.mode = "pass"
    resumed = cli("--resume", run_dir.name)
    proxy.stop()
    assert resumed.returncode == finished_exit_code(run_dir), resumed.stdout + resumed.stderr
    events = [json.loads(x) for x in resumed.stderr.splitlines() if x.startswith("{")]
    names = [e.get("event") for e in events]
    assert "planned" not in names and "run_started" not in names
    # The check, then the coder's call (asked once more if its answer did not parse); no new
    # plan.
    assert requests_before + 1 < proxy.requests
    assert proxy.requests <= requests_before + 2 + settings["llm-max-retries"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [s["id"] for s in metrics["state"]["plan"]["sub_actions"]] == ["wood"]
    assert metrics["state"]["evaluations"]  # the run went on to its end
    OUTCOMES.append(
        {"fault": "endpoint dies before the coder's call (CLI run)", "error": "exit 4",
         "retryable": True, "seconds": None,
         "message": "resumed at the coder with the reviewed plan; no call repeated"}
    )  # fmt: skip


# ------------------------------------------------------------------ a full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (the tests run as root, as CI does); unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"the full-disk tests mount a small tmpfs (as root): {mounted.stderr}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> None:
    """Write to `disk` until nothing more fits."""
    with (disk / "filler").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65_536)
                handle.flush()
        except OSError as exc:
            assert disk_full(exc), exc


def test_library_on_a_full_disk_keeps_whole_files(small_disk: Path) -> None:
    library = ActionLibrary(small_disk / "library")
    written: dict[str, str] = {}
    padding = "# " + "x" * 60_000 + "\n"
    with pytest.raises(OSError) as info:
        for i in range(200):
            source = f"{padding}def run(api):\n    return api.noop() or {i} > 0\n"
            library.add_code(f"action_{i}", source, max_steps=10)
            written[f"action_{i}"] = source
    assert disk_full(info.value) and len(written) >= 5
    # The manifest is whole and names exactly the actions whose files are whole.
    reread = ActionLibrary(small_disk / "library")
    assert sorted(e.name for e in reread.entries()) == sorted(written)
    for name, source in written.items():
        assert reread.source(name) == source
    assert not list((small_disk / "library").rglob("*.tmp")), "a temporary file was left"
    OUTCOMES.append(
        {"fault": "disk full while the library grows", "error": "OSError ENOSPC",
         "retryable": False, "seconds": None,
         "message": f"{len(written)} actions kept whole, manifest intact, no temporary files"}
    )  # fmt: skip


def test_run_on_a_full_disk_is_a_clear_error(small_disk: Path) -> None:
    _fill(small_disk)
    done = subprocess.run(
        [sys.executable, "-m", "rlgpt.cli", "run", "--task", "crafter:collect_wood",
         "--runs-dir", str(small_disk / "runs"), "--no-gif"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 5, output
    assert "no space left" in output and "resume with: rlgpt run --resume" in output
    assert "Traceback" not in output
    assert not list(small_disk.rglob("*.tmp")), "a temporary file was left"
    OUTCOMES.append(
        {"fault": "disk full under the runs directory (CLI run)", "error": "exit 5",
         "retryable": False, "seconds": None,
         "message": "clear message with the resume command; no temporary files"}
    )  # fmt: skip


# ------------------------------------------------------------------ killed processes
def test_local_server_killed_during_a_call_is_started_again(
    local_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of the embedded model server mid-answer: that call fails as `unreachable`
    (a run stops with its state kept), and the next call starts a new server."""
    monkeypatch.delenv(URL_ENV)  # the process-wide embedded server, not the session's
    settings = LLMSettings(model="local:smollm2", timeout=120.0, max_retries=1)
    question = [HumanMessage("Plan how to collect wood and then place a table.")]
    try:
        first_url = shared_base_url("smollm2")
        server = shared_server("smollm2")
        assert server is not None and server.process is not None
        killer = threading.Timer(1.0, server.process.kill)
        killer.start()
        with pytest.raises(LLMError) as info:
            ask_structured("planner", settings, Plan, question)
        killer.join()
        assert (info.value.kind, info.value.retryable) == ("unreachable", True)
        answer = ask_structured("planner", settings, Plan, question)
        assert answer.value.sub_actions and shared_base_url("smollm2") != first_url
    finally:
        stop_shared_servers()
    OUTCOMES.append(
        {"fault": "embedded model server SIGKILLed during a call", "error": "unreachable",
         "retryable": True, "seconds": None,
         "message": "that call fails (a run stops, exit 4); the next call starts a new server"}
    )  # fmt: skip


def _forkserver_workers() -> list[int]:
    """Processes started by this process's forkserver (the env workers)."""
    me = os.getpid()
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            parents[int(status.parent.name)] = int(fields["PPid"])
        except (OSError, ValueError, KeyError):
            continue
    servers = {
        pid for pid, parent in parents.items() if parent == me and b"forkserver" in _cmdline(pid)
    }
    return sorted(pid for pid, parent in parents.items() if parent in servers)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_env_worker_killed_during_training_is_replaced(tmp_path: Path) -> None:
    """SIGKILL of an env worker while PPO trains with a code action: the worker is replaced,
    its episode ends with a `killed` error, and training spends its whole budget."""
    library = ActionLibrary(tmp_path / "library")
    library.add_code("wood", GOOD_CODE, max_steps=60)
    job = RLJob(
        task="crafter:collect_wood", library_dir=str(library.root), action_names=["wood"],
        timesteps=3000, n_envs=2, n_steps=64, episode_length=150, progress_every=200,
        output_dir=str(tmp_path / "rl"), policy_name="killed_worker",
    )  # fmt: skip
    events: list[dict[str, Any]] = []
    killed: list[int] = []

    def kill_one_worker(event: dict[str, Any]) -> None:
        events.append(event)
        workers = _forkserver_workers()
        if not killed and event["env_steps"] >= 400 and workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    result = train_policy(job, on_progress=kill_one_worker)
    assert killed, "no env worker was found to kill"
    assert result.env_steps + result.prelude_env_steps >= job.timesteps
    assert events[-1]["final"] and events[-1]["code_action_errors"] >= 1
    assert Path(result.policy_path).is_file()
    OUTCOMES.append(
        {"fault": "env worker SIGKILLed during training", "error": "killed (worker replaced)",
         "retryable": False, "seconds": None,
         "message": f"training spent its budget ({result.env_steps} env steps)"}
    )  # fmt: skip
