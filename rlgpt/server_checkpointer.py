"""The graph server's checkpointer: PostgreSQL when `RLGPT_POSTGRES_URL` is set, else the default.

`langgraph.json` names `checkpointer` here (`"checkpointer": {"path": ...}`); the server
enters it once per event loop and keeps it open for its lifetime.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlgpt.checkpoint import POSTGRES_HINT, CheckpointerUnavailable, is_postgres_url, redact
from rlgpt.logging import get_logger

log = get_logger("server_checkpointer")

#: Environment variable holding the server's PostgreSQL URL; unset = the server's own store.
URL_ENV = "RLGPT_POSTGRES_URL"
#: Environment variable holding the most connections the server's pool opens.
POOL_SIZE_ENV = "RLGPT_POSTGRES_POOL_SIZE"


@dataclass(frozen=True)
class ServerCheckpointerSettings:
    """Where the graph server keeps checkpoints."""

    url: str = field(
        default="",
        metadata={"description": "postgresql:// URL; empty = the server's default checkpointer."},
    )
    pool_size: int = field(
        default=8, metadata={"description": "Most PostgreSQL connections the server opens."}
    )
    connect_timeout: float = field(
        default=30.0, metadata={"description": "Seconds to wait for the first connection."}
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerCheckpointerSettings:
        """Read the settings from the environment (`RLGPT_POSTGRES_URL`, pool size)."""
        env = os.environ if environ is None else environ
        url = env.get(URL_ENV, "").strip()
        if url and not is_postgres_url(url):
            raise ValueError(f"{URL_ENV} must be a postgresql:// URL, got {redact(url)!r}")
        raw_size = env.get(POOL_SIZE_ENV, "").strip()
        try:
            size = int(raw_size) if raw_size else cls.pool_size
        except ValueError as exc:
            raise ValueError(f"{POOL_SIZE_ENV} must be an integer, got {raw_size!r}") from exc
        if size < 1:
            raise ValueError(f"{POOL_SIZE_ENV} must be at least 1, got {size}")
        return cls(url=url, pool_size=size)


@contextlib.asynccontextmanager
async def postgres_checkpointer(settings: ServerCheckpointerSettings) -> AsyncIterator[Any]:
    """An `AsyncPostgresSaver` on a connection pool, its tables set up; the pool closes on exit."""
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool
    except ImportError as exc:
        raise CheckpointerUnavailable(f"{POSTGRES_HINT} ({exc})") from exc
    # The savers expect autocommit, dict rows and no server-side prepared statements.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo=settings.url,
        min_size=1,
        max_size=settings.pool_size,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=settings.connect_timeout)
    except Exception as exc:
        await pool.close()
        raise CheckpointerUnavailable(f"cannot connect to {redact(settings.url)}: {exc}") from exc
    try:
        saver = AsyncPostgresSaver(conn=pool)
        await saver.setup()
        log.info("server_checkpointer", kind="postgres", target=redact(settings.url))
        yield saver
    finally:
        await pool.close()


def default_checkpointer() -> Any:
    """The checkpointer the graph server uses when no custom one is configured."""
    from langgraph_runtime.checkpoint import Checkpointer

    return Checkpointer()


@contextlib.asynccontextmanager
async def checkpointer() -> AsyncIterator[Any]:
    """The server's checkpointer factory (named in `langgraph.json`)."""
    settings = ServerCheckpointerSettings.from_env()
    if not settings.url:
        log.info("server_checkpointer", kind="default")
        yield default_checkpointer()
        return
    async with postgres_checkpointer(settings) as saver:
        yield saver
