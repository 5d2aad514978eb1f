"""The one error type model calls raise, with a machine-readable kind, and the mapping of
client-library exceptions onto it."""

from __future__ import annotations

from typing import Any, Literal

import httpx
import openai
from langchain_core.exceptions import ContextOverflowError

ErrorKind = Literal[
    "unreachable", "timeout", "rate_limit", "auth", "truncated", "invalid", "server"
]

#: Kinds worth another attempt after a pause: the same request may succeed later.
TRANSIENT_KINDS: frozenset[str] = frozenset({"unreachable", "timeout", "rate_limit", "server"})

# The OpenAI client is built on `httpx2` in recent releases and on `httpx` before; errors of
# either can surface, so both are classified.
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (httpx.TimeoutException, TimeoutError)
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, ConnectionError)
_HTTP_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError,)
try:
    import httpx2

    _TIMEOUT_ERRORS += (httpx2.TimeoutException,)
    _TRANSPORT_ERRORS += (httpx2.TransportError,)
    _HTTP_ERRORS += (httpx2.HTTPError,)
except ImportError:  # pragma: no cover - depends on the installed OpenAI client
    pass


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


def classify_error(exc: BaseException) -> LLMError:
    """Map an exception of the client libraries to an LLMError with a kind."""
    if isinstance(exc, LLMError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, (openai.APITimeoutError, *_TIMEOUT_ERRORS)):
        return LLMError("timeout", f"the model did not answer in time ({name})")
    if isinstance(exc, (openai.APIConnectionError, *_TRANSPORT_ERRORS)):
        cause = exc.__cause__ or exc
        return LLMError("unreachable", f"cannot reach the model endpoint: {cause}")
    if isinstance(exc, openai.LengthFinishReasonError):
        return LLMError("truncated", "the answer hit the token limit")
    if isinstance(exc, ContextOverflowError):
        # langchain-openai raises this for a too-long prompt, as an HTTP 400 or (when the
        # server words it "exceeds the context window") as an APIError without a status.
        detail = getattr(exc, "message", None) or exc
        return LLMError(
            "truncated", f"the prompt does not fit the context window: {detail}", retryable=False
        )
    if isinstance(exc, openai.RateLimitError):
        return LLMError("rate_limit", f"rate limited: {exc.message}")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return LLMError("auth", f"the endpoint refused the credentials: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        text = exc.message.lower()
        if status == 408:
            return LLMError("timeout", f"HTTP 408: {exc.message}")
        if status >= 500:
            return LLMError("server", f"HTTP {status}: {exc.message}")
        if "context" in text and ("exceed" in text or "length" in text or "window" in text):
            return LLMError(
                "truncated", f"the prompt does not fit the context window: {exc.message}",
                retryable=False,
            )  # fmt: skip
        return LLMError("server", f"HTTP {status}: {exc.message}", retryable=False)
    if isinstance(exc, (openai.OpenAIError, *_HTTP_ERRORS)):
        return LLMError("server", f"{name}: {exc}", retryable=False)
    return LLMError("server", f"unexpected {name}: {exc}", retryable=False)


__all__ = ["TRANSIENT_KINDS", "ErrorKind", "LLMError", "classify_error"]
