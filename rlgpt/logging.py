"""structlog set-up: coloured console lines on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Looked up per logger, not once: test runners and notebooks swap sys.stderr.
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog once per process; `json=None` picks JSON when stderr is not a TTY."""
    global _configured
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> Any:
    """A structlog logger bound to a component name."""
    if not _configured:
        configure_logging()
    return structlog.get_logger(name).bind(component=name)
