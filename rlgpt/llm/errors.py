"""The one error type model calls raise, with a machine-readable kind."""

from __future__ import annotations

from typing import Any, Literal

ErrorKind = Literal[
    "unreachable", "timeout", "rate_limit", "auth", "truncated", "invalid", "server"
]

#: Kinds worth another attempt after a pause: the same request may succeed later.
TRANSIENT_KINDS: frozenset[str] = frozenset({"unreachable", "timeout", "rate_limit", "server"})


class LLMError(RuntimeError):
    """A model call that failed after its retries.

    Attributes:
        kind: One of unreachable, timeout, rate_limit, auth, truncated, invalid, server.
        message: Human-readable cause.
        raw: The last raw answer text, if any (for the critic and the error record).
        retryable: Whether the same request may succeed when sent again later.
        usage: Calls and tokens spent before giving up (a `Usage` dict), when known.
    """

    def __init__(
        self, kind: ErrorKind, message: str, raw: str = "", *, retryable: bool | None = None
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: ErrorKind = kind
        self.message = message
        self.raw = raw
        self.retryable = kind in TRANSIENT_KINDS if retryable is None else retryable
        self.usage: dict[str, Any] | None = None

    def as_record(self, node: str) -> dict[str, object]:
        """An `ErrorRecord`-shaped dict for the graph state."""
        return {
            "node": node,
            "kind": f"llm_{self.kind}",
            "message": self.message,
            "detail": {"raw": self.raw[:2000]},
        }
