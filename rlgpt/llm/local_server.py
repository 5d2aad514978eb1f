"""The embedded local model server: a llama.cpp OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from rlgpt.llm.errors import LLMError
from rlgpt.llm.model_files import DEFAULT_MODEL
from rlgpt.llm.model_files import model_path as model_file
from rlgpt.logging import get_logger

log = get_logger("rlgpt.llm.local_server")

#: Environment variable naming an already-running OpenAI-compatible server to reuse.
URL_ENV = "RLGPT_LOCAL_LLM_URL"

#: Environment variable choosing the engine behind the local endpoint: `cyllama` (the
#: default, a binary wheel) or `llama-cpp-python` (its own server; the `llama-cpp` extra).
ENGINE_ENV = "RLGPT_LOCAL_ENGINE"
ENGINES = ("cyllama", "llama-cpp-python")

# Runs inside a llama-cpp-python server process: exits when the parent process goes away
# (even after a SIGKILL, when no handler of the parent can run), then hands over to it.
_LLAMA_CPP_CHILD = """
import os, runpy, sys, threading, time
parent = int(sys.argv[1])
def _watch():
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1.0)
threading.Thread(target=_watch, daemon=True).start()
sys.argv = ["llama_cpp.server", *sys.argv[2:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def normalise_base_url(url: str) -> str:
    """`http://host:port` or `http://host:port/v1` -> `http://host:port/v1`."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def server_answers(base_url: str, timeout: float = 2.0) -> bool:
    """True when `GET <base_url>/models` answers with HTTP 200."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class LocalServerConfig:
    """How the embedded llama.cpp server is started."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "description": "Embedded model name (see `rlgpt.llm.model_files`) or a .gguf path."
        },
    )
    engine: str = field(
        default="cyllama",
        metadata={
            "description": "`cyllama` (rlgpt's endpoint) or `llama-cpp-python` (its server)."
        },
    )
    host: str = field(default="127.0.0.1", metadata={"description": "Bind address (loopback)."})
    port: int = field(default=0, metadata={"description": "TCP port; 0 picks a free one."})
    n_ctx: int = field(default=8192, metadata={"description": "Context window in tokens."})
    n_threads: int = field(default=2, metadata={"description": "Generation threads."})
    n_threads_batch: int = field(default=2, metadata={"description": "Prompt-processing threads."})
    start_timeout: float = field(
        default=120.0, metadata={"description": "Seconds to wait for the server to answer."}
    )
    prefix_slots: int = field(
        default=8,
        metadata={
            "description": "Evaluated prompts kept for reuse, so each role's long system prompt "
            "is processed once even when roles take turns (llama-cpp-python: 48 MB each). 0 = off."
        },
    )


class LocalServer:
    """One llama.cpp server process; a context manager (`with LocalServer() as url:`)."""

    def __init__(self, config: LocalServerConfig | None = None) -> None:
        self.config = config or LocalServerConfig()
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.start_seconds = 0.0
        self._log_path: Path | None = None
        self._owner_pid = os.getpid()
        # Re-entrant: the SIGTERM hook may stop the server while this thread is starting it.
        self._lock = threading.RLock()

    @property
    def owned(self) -> bool:
        """False in a forked copy of the process that started the server: such a copy may
        use the server but never stops it."""
        return self._owner_pid == os.getpid()

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        if self.process is None:
            return False
        if not self.owned:
            return bool(self.base_url) and server_answers(self.base_url)
        return self.process.poll() is None

    def start(self) -> str:
        """Start the server (no-op when running) and return its `/v1` base URL."""
        with self._lock:
            if self.running:
                return self.base_url
            if self.owned:
                self._terminate()  # reap a dead server and drop its log
            else:
                # A handle inherited through fork: this process starts its own server.
                self.process, self._log_path = None, None
                self._owner_pid = os.getpid()
            model_path = model_file(self.config.model)
            last_error: LLMError | None = None
            # A port found free can be taken before the server binds it: try a few.
            for _ in range(3):
                try:
                    self._spawn(model_path)
                    return self.base_url
                except LLMError as exc:
                    last_error = exc
                    self._terminate()
                    if self.config.port:
                        break
            if last_error is None:
                raise LLMError("unreachable", "local server did not start")
            raise last_error

    def _spawn(self, model_path: Path) -> None:
        if self.config.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the local model server binds the loopback interface only")
        port = self.config.port or free_port(self.config.host)
        env = dict(os.environ)
        # OpenMP busy-waiting threads starve every other process on shared cores.
        env["OMP_WAIT_POLICY"] = "passive"
        env.setdefault("OMP_NUM_THREADS", str(self.config.n_threads))
        args = self._command(model_path, port)
        fd, log_name = tempfile.mkstemp(prefix="rlgpt-llm-", suffix=".log")
        self._log_path = Path(log_name)
        started = time.monotonic()
        with os.fdopen(fd, "wb") as log_file:
            # Own session: a terminal Ctrl-C reaches the host program, which then stops the
            # server through its exit hooks, instead of killing the server mid-answer.
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        base_url = f"http://{self.config.host}:{port}/v1"
        deadline = started + self.config.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LLMError(
                    "unreachable",
                    f"local model server exited with code {self.process.returncode}: "
                    f"{self._log_tail()}",
                )
            if server_answers(base_url, timeout=1.0):
                self.base_url = base_url
                self.start_seconds = time.monotonic() - started
                log.info(
                    "local_llm_started",
                    url=base_url,
                    pid=self.process.pid,
                    model=str(model_path.name),
                    seconds=round(self.start_seconds, 2),
                )
                return
            time.sleep(0.2)
        raise LLMError(
            "timeout",
            f"local model server did not answer within {self.config.start_timeout:.0f}s: "
            f"{self._log_tail()}",
        )

    def _command(self, model_path: Path, port: int) -> list[str]:
        cfg = self.config
        alias = model_path.stem if cfg.model.endswith(".gguf") else cfg.model
        if cfg.engine == "cyllama":
            return [
                sys.executable, "-m", "rlgpt.llm.engine_server",
                "--model", str(model_path), "--alias", alias,
                "--host", cfg.host, "--port", str(port), "--n-ctx", str(cfg.n_ctx),
                "--threads", str(cfg.n_threads), "--threads-batch", str(cfg.n_threads_batch),
                "--prefix-slots", str(cfg.prefix_slots), "--parent-pid", str(os.getpid()),
            ]  # fmt: skip
        if cfg.engine != "llama-cpp-python":
            raise LLMError(
                "unreachable",
                f"unknown local engine {cfg.engine!r}; use one of {', '.join(ENGINES)}",
                retryable=False,
            )
        args = [
            sys.executable, "-c", _LLAMA_CPP_CHILD, str(os.getpid()),
            "--model", str(model_path), "--model_alias", alias,
            "--host", cfg.host, "--port", str(port), "--n_ctx", str(cfg.n_ctx),
            "--n_threads", str(cfg.n_threads), "--n_threads_batch", str(cfg.n_threads_batch),
            "--verbose", "False",
        ]  # fmt: skip
        if cfg.prefix_slots > 0:
            args += ["--cache", "True", "--cache_type", "ram",
                     "--cache_size", str(cfg.prefix_slots * (48 << 20))]  # fmt: skip
        return args

    def _log_tail(self, chars: int = 1500) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:].strip()

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is not None and self.owned and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def stop(self) -> None:
        """Stop the server process (no-op when it is not running)."""
        with self._lock:
            pid = self.process.pid if self.process is not None and self.owned else None
            self._terminate()
            if pid is not None:
                log.info("local_llm_stopped", url=self.base_url, pid=pid)
            self.base_url = ""

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_shared: dict[str, LocalServer] = {}
_shared_lock = threading.RLock()
_hooks_installed = False
_previous_handlers: dict[int, Any] = {}


def shared_base_url(model: str = DEFAULT_MODEL) -> str:
    """Base URL of the process-wide local server for `model`, started on first use.

    `RLGPT_LOCAL_LLM_URL` (if set) names a running server to use instead. Thread-safe:
    concurrent first calls start one server.
    """
    reuse = os.environ.get(URL_ENV, "").strip()
    if reuse:
        return normalise_base_url(reuse)
    with _shared_lock:
        server = _shared.get(model)
        if server is None:
            engine = os.environ.get(ENGINE_ENV, "").strip() or "cyllama"
            server = LocalServer(LocalServerConfig(model=model, engine=engine))
            _shared[model] = server
            _install_exit_hooks()
    # Starting outside the registry lock lets servers of different models start in parallel.
    return server.start()


def shared_server(model: str = DEFAULT_MODEL) -> LocalServer | None:
    """The process-wide local server of `model`, if one was started."""
    with _shared_lock:
        return _shared.get(model)


def stop_shared_servers() -> None:
    """Stop every process-wide local server (also run at interpreter exit)."""
    with _shared_lock:
        servers = list(_shared.values())
        _shared.clear()
    for server in servers:
        server.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop_shared_servers()
    previous = _previous_handlers.get(signum)
    if previous is None:
        previous = signal.SIG_DFL
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        # Re-deliver with the default action so the exit status stays "killed by signal".
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_exit_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(stop_shared_servers)
    # SIGINT needs no handler: KeyboardInterrupt unwinds to a normal exit and atexit runs.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue
            signal.signal(signum, _on_signal)
            _previous_handlers[signum] = previous
        except ValueError:
            # Signal handlers can only be set from the main thread; the parent-watch in the
            # server process still ends it when this process dies.
            log.debug("local_llm_no_signal_hook", signal=int(signum))
