"""The graph server command: `langgraph dev` on 127.0.0.1 with this package's graph."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def serve_env() -> dict[str, str]:
    """The environment for `langgraph dev`: no analytics, no version check, no tracing."""
    return {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
    }


def serve_command(port: int, config: Path, jobs: int = 4, reload: bool = False) -> list[str]:
    """The `langgraph dev` command line, bound to 127.0.0.1.

    `langgraph dev` runs one run at a time unless told otherwise, and by default restarts
    on any file change under its working directory, which includes what runs write.
    """
    exe = Path(sys.executable).with_name("langgraph")
    return [
        str(exe),
        "dev",
        "--no-browser",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(config),
        "--allow-blocking",
        "--n-jobs-per-worker",
        str(jobs),
        *([] if reload else ["--no-reload"]),
    ]


def port_free(port: int) -> bool:
    """Whether `port` on 127.0.0.1 can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
