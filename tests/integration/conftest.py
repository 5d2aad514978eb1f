"""Fixtures shared by the integration tests: real local model servers.

`local_server` runs the small, fast model (`smollm2`) for the whole session and publishes it
through RLGPT_LOCAL_LLM_URL, so every `local:<model>` string reaches it: most tests only
need a working endpoint. `qwen_server` runs the real default model (`qwen2.5-coder-1.5b`)
for the module that asks for it; a test reaches it by pointing RLGPT_LOCAL_LLM_URL at its
`base_url`.

`postgres_url` is a private PostgreSQL cluster on 127.0.0.1 for the test module that asks
for it; a machine without PostgreSQL fails those tests with what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlgpt.llm.local_server import URL_ENV, LocalServer, LocalServerConfig, server_answers
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
