"""The graph server for tests: `langgraph dev` on 127.0.0.1, started the way `rlgpt serve` does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rlgpt.llm.local_server import free_port
from rlgpt.serve import serve_command, serve_env

ROOT = Path(__file__).resolve().parents[2]
#: The graph's name in langgraph.json (its assistant id on the server).
GRAPH = "rlgpt"


@dataclass
class GraphServer:
    """A running `langgraph dev` process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    start_seconds: float

    def log_text(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(errors="replace")


def serve_config(directory: Path, checkpointer: bool = False) -> Path:
    """The project's langgraph.json with its paths made absolute, written into `directory`.

    The server runs in `directory` (its in-memory store persists there), so relative paths
    of the project file would not resolve.
    """
    config = json.loads((ROOT / "langgraph.json").read_text())

    def absolute(spec: str) -> str:
        path, _, attr = spec.partition(":")
        return f"{(ROOT / path).resolve()}:{attr}" if path.startswith(".") else spec

    config["graphs"] = {name: absolute(spec) for name, spec in config["graphs"].items()}
    config["dependencies"] = [
        str((ROOT / dep).resolve()) if dep.startswith(".") else dep
        for dep in config.get("dependencies", ["."])
    ]
    if checkpointer:
        config["checkpointer"] = {
            "path": f"{ROOT / 'rlgpt' / 'server_checkpointer.py'}:checkpointer"
        }
    elif "checkpointer" in config:
        config["checkpointer"] = {"path": absolute(config["checkpointer"]["path"])}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "langgraph.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def answers(url: str) -> bool:
    """Whether a graph server answers at `url`."""
    try:
        with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_logged(
    command: list[str], cwd: Path, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` in its own process group, its output going to `log_path`."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_answering(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float, name: str
) -> None:
    """Wait until the server `process` answers at `url`; raise when it exits or times out."""
    started = time.monotonic()
    while not answers(url):
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log_path.read_text()[-3000:]}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{name} did not answer: {log_path.read_text()[-3000:]}")
        time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    found = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, check=False)
    return bool(found.stdout.split())


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by `start_logged` and every process of its group."""
    # The server is its own process group: server, threads' env workers, all go together.
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
        raise RuntimeError(f"processes of the graph server group {process.pid} outlived it")


@contextmanager
def graph_server(
    directory: Path, env: dict[str, str], checkpointer: bool = False, timeout: float = 120.0
) -> Iterator[GraphServer]:
    """Start `langgraph dev` the way `rlgpt serve` does, on a free port; stop its process group."""
    config = serve_config(directory / "server", checkpointer)
    port = free_port()
    command = serve_command(port, config)
    if "--no-reload" not in command:
        # Files the runs write must not restart the server mid-run.
        command.append("--no-reload")
    if "--n-jobs-per-worker" not in command:
        # `langgraph dev` runs one run at a time unless told otherwise.
        command += ["--n-jobs-per-worker", "4"]
    log_path = directory / "server.log"
    started = time.monotonic()
    process = start_logged(command, config.parent, log_path, {**serve_env(), **env})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url, process, log_path, timeout, "langgraph dev")
        yield GraphServer(url, process, log_path, time.monotonic() - started)
    finally:
        stop_group(process)
