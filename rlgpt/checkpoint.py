"""Checkpointers for CLI runs: a SQLite file by default, PostgreSQL for a `postgresql://` URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlgpt.logging import get_logger

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

log = get_logger("checkpoint")

#: URL schemes that select PostgreSQL.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

#: How to get the PostgreSQL savers (named in every error about them).
POSTGRES_HINT = (
    "PostgreSQL checkpoints need the `postgres` extra: "
    "pip install 'rlgpt[postgres]' (langgraph-checkpoint-postgres and psycopg)"
)


class CheckpointerUnavailable(RuntimeError):
    """The checkpointer asked for cannot be opened (missing extra, unreachable database)."""


def is_postgres_url(target: str) -> bool:
    """True when `target` names a PostgreSQL database rather than a SQLite file."""
    return target.strip().lower().startswith(POSTGRES_SCHEMES)


def redact(target: str) -> str:
    """The target with any password replaced, for logs and error messages."""
    if not is_postgres_url(target) or "@" not in target:
        return target
    scheme, rest = target.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else target


def _postgres_modules() -> tuple[Any, Any]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
    except ImportError as exc:
        raise CheckpointerUnavailable(f"{POSTGRES_HINT} ({exc})") from exc
    return psycopg, PostgresSaver


@contextlib.contextmanager
def open_checkpointer(target: str) -> Iterator[BaseCheckpointSaver[Any]]:
    """Open the checkpointer a run persists to, with its tables set up.

    Args:
        target: A SQLite file path (its directory is created), or a `postgresql://` URL.

    Yields:
        A `SqliteSaver` or a `PostgresSaver` whose `.setup()` has run; closed on exit.

    Raises:
        CheckpointerUnavailable: The `postgres` extra is missing or the database is unreachable.
        ValueError: `target` is empty.
    """
    if not target or not target.strip():
        raise ValueError("checkpointer target is empty: pass a SQLite file or a postgresql:// URL")
    if is_postgres_url(target):
        psycopg, saver_cls = _postgres_modules()
        with contextlib.ExitStack() as stack:
            try:
                saver = stack.enter_context(saver_cls.from_conn_string(target.strip()))
            except psycopg.OperationalError as exc:
                raise CheckpointerUnavailable(
                    f"cannot connect to {redact(target)}: {str(exc).strip()}"
                ) from exc
            saver.setup()
            log.info("checkpointer_opened", kind="postgres", target=redact(target))
            yield saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(target).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with SqliteSaver.from_conn_string(str(path)) as sqlite_saver:
        sqlite_saver.setup()
        log.info("checkpointer_opened", kind="sqlite", target=str(path))
        yield sqlite_saver
