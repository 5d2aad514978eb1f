"""Joining Ray with safe defaults: a local cluster on loopback, or a cluster named explicitly.

A local cluster (no address) listens on 127.0.0.1 only, with no dashboard, no usage
statistics and token authentication whose token lives in a file only this user can read.
Ray reads the switch that keeps its servers on loopback when it is imported, so it must be
set before the first `import ray` of the process; `connect` refuses to start a local
cluster that would listen on other interfaces.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from rlgpt.logging import get_logger

log = get_logger("rlgpt.execution.ray")

LOOPBACK = "127.0.0.1"
#: Ray binds every server to the node's address; "0" makes that address loopback on Linux.
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: The niceness of a local cluster's task workers (Ray's default is 15).
NICENESS = "RAY_worker_niceness"
#: Where the local cluster's token is kept (mode 0600) unless RAY_AUTH_TOKEN_PATH names one.
TOKEN_FILE = Path("~/.cache/rlgpt/ray/auth_token")

_lock = threading.Lock()


class RayUnavailable(RuntimeError):
    """Ray is not installed, or cannot be joined safely."""


def ray_installed() -> bool:
    """Whether the `ray` extra is installed."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _private_token() -> Path:
    """The local cluster's token file, created with a fresh token and mode 0600 if missing."""
    path = TOKEN_FILE.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def connect(address: str = "") -> ModuleType:
    """The `ray` module, joined to a cluster: the one this process already joined, the one at
    `address`, or (empty address) a new local cluster on loopback.

    Raises:
        RayUnavailable: Ray is not installed, or a local cluster would not be on loopback.
    """
    with _lock:
        if not address:
            # Both must be in place before Ray is imported anywhere in this process.
            os.environ[LOOPBACK_SWITCH] = "0"
            # Ray runs tasks at nice 15 by default: on a machine doing other work too (a
            # laptop), training then gets a fraction of the cores it asked for.
            os.environ.setdefault(NICENESS, "0")
            if "RAY_AUTH_MODE" not in os.environ:
                os.environ["RAY_AUTH_MODE"] = "token"
                os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(_private_token()))
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailable(
                "executor `ray` needs Ray: pip install 'rlgpt[ray]' (or pass --executor local)"
            ) from exc
        if ray.is_initialized():
            return ray
        quiet: dict[str, Any] = {
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "namespace": "rlgpt",
        }
        if address:
            log.info("ray_joining", address=address)
            ray.init(address=address, **quiet)
            return ray
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise RayUnavailable(
                f"Ray was imported before rlgpt could keep a local cluster on loopback; set "
                f"{LOOPBACK_SWITCH}=0 in the environment, or pass --ray-address of a cluster"
            )
        ray.init(address="local", include_dashboard=False, **quiet)
        node_ip = ray.util.get_node_ip_address()
        if node_ip != LOOPBACK:
            ray.shutdown()
            raise RayUnavailable(f"the local Ray cluster would listen on {node_ip}, not loopback")
        log.info("ray_local_cluster_started", cpus=ray.cluster_resources().get("CPU"))
        return ray
