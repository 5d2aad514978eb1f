"""structlog set-up: JSON lines off a terminal; on one, coloured lines printed through the
shared rich console, so they appear above a live display instead of inside it."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from rich.console import Console
from rich.text import Text

_configured = False
_console: Console | None = None


def terminal_console() -> Console:
    """The one rich console on standard error that live displays and log lines share."""
    global _console
    if _console is None:
        _console = Console(stderr=True)
    return _console


class ConsoleLogger:
    """A structlog logger that prints rendered lines through the shared rich console."""

    def msg(self, message: str) -> None:
        """Print one rendered line (ANSI colours kept) above any live display."""
        terminal_console().print(Text.from_ansi(message), soft_wrap=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Looked up per logger, not once: test runners and notebooks swap sys.stderr.
    return structlog.PrintLogger(file=sys.stderr)


def _console_logger(*_args: Any) -> ConsoleLogger:
    return ConsoleLogger()


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
        logger_factory=_stderr_logger if use_json else _console_logger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> Any:
    """A structlog logger bound to a component name.

    The logger stays lazy: each call reads the configuration in force, so loggers made at
    import follow a level or renderer chosen later (`rlgpt -v`, `--log-level`).
    """
    if not _configured:
        configure_logging()
    return structlog.get_logger(name, component=name)
