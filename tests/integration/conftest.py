"""Fixtures shared by the integration tests: one real local model server per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlgpt.llm.local_server import URL_ENV, LocalServer, server_answers


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    """One real server for the session; `local:smollm2` reaches it through RLGPT_LOCAL_LLM_URL."""
    server = LocalServer()
    with pytest.MonkeyPatch.context() as patch, server as url:
        patch.setenv(URL_ENV, url)
        yield server
    if server.process is not None:
        raise RuntimeError("the local model server is still running after the session")
    if server_answers(url, timeout=1.0):
        raise RuntimeError(f"something still answers at {url} after the server stopped")
