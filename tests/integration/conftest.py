"""Fixtures shared by the integration tests: real local model servers.

`local_server` runs the small, fast model (`smollm2`) for the whole session and publishes it
through RLGPT_LOCAL_LLM_URL, so every `local:<model>` string reaches it: most tests only
need a working endpoint. `qwen_server` runs the real default model (`qwen2.5-coder-1.5b`)
for the module that asks for it; a test reaches it by pointing RLGPT_LOCAL_LLM_URL at its
`base_url`.

`ray_cluster` is a two-node Ray cluster on loopback for the session, joined by this process.

`postgres_url` is a private PostgreSQL cluster on 127.0.0.1 for the test module that asks
for it; a machine without PostgreSQL fails those tests with what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from rlgpt.execution.ray_cluster import LOOPBACK_SWITCH, NICENESS, connect
from rlgpt.llm.local_server import URL_ENV, LocalServer, LocalServerConfig, server_answers
from tests.helpers import listening_sockets
from tests.integration.postgres import PostgresUnavailable, running_postgres

#: The model of the session server: small and fast.
FAST_MODEL = "smollm2"
#: The default model of `local:` runs.
QWEN_MODEL = "qwen2.5-coder-1.5b"


def _check_stopped(server: LocalServer, url: str) -> None:
    if server.process is not None:
        raise RuntimeError("the local model server is still running after its tests")
    if server_answers(url, timeout=1.0):
        raise RuntimeError(f"something still answers at {url} after the server stopped")


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    """One real `smollm2` server for the session, reached through RLGPT_LOCAL_LLM_URL."""
    server = LocalServer(LocalServerConfig(model=FAST_MODEL))
    with pytest.MonkeyPatch.context() as patch, server as url:
        patch.setenv(URL_ENV, url)
        yield server
    _check_stopped(server, url)


@pytest.fixture(scope="module")
def qwen_server() -> Iterator[LocalServer]:
    """A real server of the default model (`qwen2.5-coder-1.5b`) for one test module.

    It does not touch RLGPT_LOCAL_LLM_URL; a test sets it to `base_url` when its calls
    should reach this model.
    """
    server = LocalServer(LocalServerConfig(model=QWEN_MODEL))
    with server as url:
        yield server
    _check_stopped(server, url)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL cluster for the module.

    The Postgres checkpointer is tested against a real server, never skipped: a machine
    without PostgreSQL fails here, naming what is missing.
    """
    try:
        with running_postgres() as cluster:
            print(f"postgres started in {cluster.start_seconds:.1f}s on port {cluster.port}")
            yield cluster.url
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed for these tests: {exc}")


class RayCluster:
    """The running two-node test cluster: its address, its nodes and the sockets it opened."""

    def __init__(self, cluster: Any, opened: set[tuple[str, int]]) -> None:
        self.cluster = cluster
        self.address: str = cluster.address
        self.opened = opened


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A real two-node Ray cluster on this machine (head and worker node of one CPU each),
    every server on loopback; this process joins it. Needs the `ray` extra."""
    # Before Ray is imported: every server on loopback, workers at normal priority.
    os.environ[LOOPBACK_SWITCH] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault(NICENESS, "0")
    import ray
    from ray.cluster_utils import Cluster

    before = listening_sockets()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        connect(cluster.address)
        yield RayCluster(cluster, listening_sockets() - before)
    finally:
        ray.shutdown()
        cluster.shutdown()
